// The orders service's SQL: orders, their history, the events already applied, and the outbox.
import { createHash } from 'node:crypto';
import { openDatabase, timeOrderedId, type DB } from '../../lib/db.js';
import { createEvent } from '../../lib/events.js';
import { enqueueEvent, outboxMigration } from '../../lib/outbox.js';
import { orderCreated, orderStatus, publicOrderRef } from '../../lib/topics.js';
import { OrderChanges } from './changes.js';
import { OrderTimelines, timelineMigration } from './timeline.js';
import type { Hop } from '../../lib/timeline.js';
import type { z } from 'zod';
import type { customer as customerSchema, orderItem } from '../../lib/topics.js';

export const SOURCE = '/woodytoys/orders';

const migrations = [
  `CREATE TABLE orders (
     id TEXT PRIMARY KEY,
     status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'rejected')),
     customer TEXT NOT NULL,
     items TEXT NOT NULL,
     reason TEXT,
     erp_reference TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE INDEX orders_status ON orders (status);
   CREATE TABLE order_history (
     order_id TEXT NOT NULL REFERENCES orders (id),
     seq INTEGER NOT NULL,
     status TEXT NOT NULL,
     at TEXT NOT NULL,
     detail TEXT,
     PRIMARY KEY (order_id, seq)
   );
   CREATE TABLE processed_events (id TEXT PRIMARY KEY, processed_at TEXT NOT NULL);
   ${outboxMigration}`,
  // Idempotency-Key: the key, a hash of the body it came with, and the order it created.
  `CREATE TABLE idempotency_keys (
     key TEXT PRIMARY KEY,
     body_hash TEXT NOT NULL,
     order_id TEXT NOT NULL REFERENCES orders (id),
     created_at TEXT NOT NULL
   );`,
  // Parked orders: pending, their ERP attempts spent on transient failures, waiting for a replay.
  `ALTER TABLE orders ADD COLUMN parked_at TEXT;
   CREATE INDEX orders_parked ON orders (parked_at) WHERE parked_at IS NOT NULL AND status = 'pending';`,
  // Each order's hops, for GET /api/orders/{id}/timeline (timeline.ts).
  timelineMigration,
];

export type Status = 'pending' | 'confirmed' | 'rejected';
/** A step of an order's history: a status, or `parked` (still pending: see applyParked). */
export type Step = Status | 'parked';
export const STEPS = ['pending', 'parked', 'confirmed', 'rejected'] as const satisfies readonly Step[];
/** Whether a step ends the order's history. */
export const isFinal = (step: Step) => step === 'confirmed' || step === 'rejected';
export type NewOrder = { customer: z.infer<typeof customerSchema>; items: z.infer<typeof orderItem>[] };

export interface Order extends NewOrder {
  id: string;
  status: Status;
  reason: string | null;
  erpReference: string | null;
  createdAt: string;
  updatedAt: string;
  history: { status: Step; at: string; detail: string | null }[];
}

interface OrderRow {
  id: string;
  status: Status;
  customer: string;
  items: string;
  reason: string | null;
  erp_reference: string | null;
  created_at: string;
  updated_at: string;
}

/** What create() did with an Idempotency-Key: a new order, the one the key made before, or a clash. */
export type CreateResult = { kind: 'created'; order: Order } | { kind: 'replayed'; order: Order } | { kind: 'key-reused' };

export type OutcomeResult = 'applied' | 'duplicate' | 'unknown-order' | 'already-final';

/** An outcome's hops for the timeline, made when it is known to be new (its apply hop ends then). */
export type Journey = () => Hop[];
const NO_HOPS: Journey = () => [];

/** One step of an order's history; `seq` counts from 1 per order (the id of its server-sent event). */
export interface HistoryEntry {
  seq: number;
  status: Step;
  at: string;
  detail: string | null;
}

type Position = { pos: number; id: string };

/** Every statement on orders, with the shape of its parameters and rows: the one place they are typed. */
const statements = (db: DB) => ({
  one: db.prepare<[id: string], OrderRow>('SELECT * FROM orders WHERE id = ?'),
  history: db.prepare<[orderId: string], Order['history'][number]>('SELECT status, at, detail FROM order_history WHERE order_id = ? ORDER BY seq'),
  historySince: db.prepare<[orderId: string, afterSeq: number], HistoryEntry>('SELECT seq, status, at, detail FROM order_history WHERE order_id = ? AND seq > ? ORDER BY seq'),
  /** Newest first, by position (rowid). */
  page: {
    any: db.prepare<[before: number, limit: number], Position>('SELECT rowid AS pos, id FROM orders WHERE rowid < ? ORDER BY rowid DESC LIMIT ?'),
    withStatus: db.prepare<[before: number, status: Status, limit: number], Position>('SELECT rowid AS pos, id FROM orders WHERE rowid < ? AND status = ? ORDER BY rowid DESC LIMIT ?'),
  },
  status: db.prepare<[id: string], Pick<OrderRow, 'status'>>('SELECT status FROM orders WHERE id = ?'),
  items: db.prepare<[id: string], Pick<OrderRow, 'items'>>('SELECT items FROM orders WHERE id = ?'),
  countParked: db.prepare<[], { n: number }>("SELECT count(*) AS n FROM orders WHERE parked_at IS NOT NULL AND status = 'pending'"),
  countByStatus: db.prepare<[], { status: Status; n: number }>('SELECT status, count(*) AS n FROM orders GROUP BY status'),
  idempotencyKey: db.prepare<[key: string], { body_hash: string; order_id: string }>('SELECT body_hash, order_id FROM idempotency_keys WHERE key = ?'),
  insert: db.prepare<[id: string, status: Status, customer: string, items: string, createdAt: string, updatedAt: string]>(
    'INSERT INTO orders (id, status, customer, items, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
  ),
  insertIdempotencyKey: db.prepare<[key: string, bodyHash: string, orderId: string, createdAt: string]>(
    'INSERT INTO idempotency_keys (key, body_hash, order_id, created_at) VALUES (?, ?, ?, ?)',
  ),
  insertHistory: db.prepare<[orderId: string, sameOrderId: string, status: Step, at: string, detail: string | null]>(
    'INSERT INTO order_history (order_id, seq, status, at, detail) VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM order_history WHERE order_id = ?), ?, ?, ?)',
  ),
  finish: db.prepare<[status: Status, reason: string | null, erpReference: string | null, updatedAt: string, id: string]>(
    'UPDATE orders SET status = ?, reason = ?, erp_reference = ?, updated_at = ?, parked_at = NULL WHERE id = ?',
  ),
  park: db.prepare<[parkedAt: string, updatedAt: string, id: string]>('UPDATE orders SET parked_at = ?, updated_at = ? WHERE id = ?'),
  processed: db.prepare<[eventId: string, processedAt: string]>('INSERT INTO processed_events (id, processed_at) VALUES (?, ?) ON CONFLICT DO NOTHING'),
});

export class OrderStore {
  readonly db: DB;
  /** Told after each committed change of status, for the orders' event streams. */
  readonly changes = new OrderChanges();
  /** Each order's hops (timeline.ts). */
  readonly timelines: OrderTimelines;
  readonly #sql: ReturnType<typeof statements>;

  constructor(file: string) {
    this.db = openDatabase(file, { migrations });
    this.#sql = statements(this.db);
    this.timelines = new OrderTimelines(this.db);
  }

  /**
   * Writes the order as pending and the event announcing it, in one transaction. With an idempotency
   * key, the key and a hash of the body are stored in that transaction too: the same key and body
   * again give back the first order; the same key with another body is refused.
   */
  create(input: NewOrder, idempotencyKey?: string, receivedAt = Date.now()): CreateResult {
    // Time-ordered ids: each order's rows land beside the previous order's in every index.
    const id = timeOrderedId();
    const now = new Date().toISOString();
    const bodyHash = idempotencyKey === undefined ? '' : createHash('sha256').update(canonicalJson(input)).digest('hex');
    const result = this.db.transaction((): CreateResult | undefined => {
      if (idempotencyKey !== undefined) {
        const seen = this.#sql.idempotencyKey.get(idempotencyKey);
        if (seen) return seen.body_hash === bodyHash ? { kind: 'replayed', order: this.get(seen.order_id)! } : { kind: 'key-reused' };
      }
      this.#sql.insert.run(id, 'pending', JSON.stringify(input.customer), JSON.stringify(input.items), now, now);
      this.addHistory(id, 'pending', now, null);
      if (idempotencyKey !== undefined) {
        this.#sql.insertIdempotencyKey.run(idempotencyKey, bodyHash, id, now);
      }
      const event = createEvent(orderCreated, { orderId: id, ...input }, { source: SOURCE, subject: id });
      this.timelines.accepted(id, receivedAt, Date.parse(event.time), enqueueEvent(this.db, orderCreated.topic, event), event.traceparent?.split('-')[1]);
      this.announceStatus(id, 'pending', input.items);
      return undefined;
    })();
    // What get(id) would read back, without reading it back.
    const order: Order = { id, status: 'pending', ...input, reason: null, erpReference: null, createdAt: now, updatedAt: now, history: [{ status: 'pending', at: now, detail: null }] };
    if (result) return result;
    this.changes.notify(id);
    return { kind: 'created', order };
  }

  /** Newest first; `before` is the position (rowid) of the last order of the previous page. */
  list({ status, before, limit }: { status?: Status | undefined; before?: number | undefined; limit: number }): { items: Order[]; more: boolean; last?: number } {
    const from = before ?? Number.MAX_SAFE_INTEGER;
    const rows = status ? this.#sql.page.withStatus.all(from, status, limit + 1) : this.#sql.page.any.all(from, limit + 1);
    const page = rows.slice(0, limit);
    return { items: page.map((r) => this.get(r.id)!), more: rows.length > limit, ...(page.length ? { last: page.at(-1)!.pos } : {}) };
  }

  get(id: string): Order | undefined {
    const row = this.#sql.one.get(id);
    if (!row) return undefined;
    const history = this.#sql.history.all(id);
    return {
      id: row.id,
      status: row.status,
      customer: JSON.parse(row.customer) as Order['customer'],
      items: JSON.parse(row.items) as Order['items'],
      reason: row.reason,
      erpReference: row.erp_reference,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      history,
    };
  }

  /**
   * Applies an outcome event once: the event id is remembered in the same transaction as the change,
   * so a redelivered event changes nothing. Only a pending order moves to a final status.
   */
  applyOutcome(eventId: string, orderId: string, status: Exclude<Status, 'pending'>, detail: { reason?: string; erpReference?: string }, hops: Journey = NO_HOPS): OutcomeResult {
    const result = this.db.transaction((): OutcomeResult => {
      const now = new Date().toISOString();
      const refused = this.takePending(eventId, orderId, now, hops);
      if (refused) return refused;
      this.#sql.finish.run(status, detail.reason ?? null, detail.erpReference ?? null, now, orderId);
      this.addHistory(orderId, status, now, detail.reason ?? detail.erpReference ?? null);
      const { items } = this.#sql.items.get(orderId)!;
      this.announceStatus(orderId, status, JSON.parse(items) as NewOrder['items']);
      return 'applied';
    })();
    if (result === 'applied') this.changes.notify(orderId);
    return result;
  }

  /**
   * Parks a pending order (once per event): the ERP could not be reached for all of a worker's
   * attempts. It stays pending, its reservation held; a `parked` step with the reason goes into its
   * history. A replay of its dead letter then confirms or rejects it as usual.
   */
  applyParked(eventId: string, orderId: string, reason: string, hops: Journey = NO_HOPS): OutcomeResult {
    const result = this.db.transaction((): OutcomeResult => {
      const now = new Date().toISOString();
      const refused = this.takePending(eventId, orderId, now, hops);
      if (refused) return refused;
      this.#sql.park.run(now, now, orderId);
      this.addHistory(orderId, 'parked', now, reason);
      return 'applied';
    })();
    if (result === 'applied') this.changes.notify(orderId);
    return result;
  }

  /**
   * Inside an outcome's transaction: remembers the event id and keeps the hops it brought for the
   * order's timeline, and says why the outcome changes nothing (seen before, no such order, already
   * final), or undefined when the order is pending.
   */
  private takePending(eventId: string, orderId: string, now: string, hops: Journey): Exclude<OutcomeResult, 'applied'> | undefined {
    const fresh = this.#sql.processed.run(eventId, now);
    if (fresh.changes === 0) return 'duplicate';
    const row = this.#sql.status.get(orderId);
    if (!row) return 'unknown-order';
    this.timelines.recorded(orderId, hops());
    return row.status === 'pending' ? undefined : 'already-final';
  }

  /** Pending orders that are parked now. */
  countParked(): number {
    return this.#sql.countParked.get()!.n;
  }

  /** The order's history after step `afterSeq`, oldest first (all of it from 0). */
  historySince(orderId: string, afterSeq: number): HistoryEntry[] {
    return this.#sql.historySince.all(orderId, afterSeq);
  }

  countByStatus(): Record<Status, number> {
    const counts: Record<Status, number> = { pending: 0, confirmed: 0, rejected: 0 };
    for (const r of this.#sql.countByStatus.all()) {
      counts[r.status] = r.n;
    }
    return counts;
  }

  /** The public face of a change of status, for displays: no customer, no order id (lib/topics.ts). Inside the change's transaction. */
  private announceStatus(orderId: string, status: Status, items: NewOrder['items']): void {
    const units = items.reduce((n, i) => n + i.quantity, 0);
    enqueueEvent(this.db, orderStatus.topic, createEvent(orderStatus, { ref: publicOrderRef(orderId), status, units }, { source: SOURCE }));
  }

  private addHistory(orderId: string, status: Step, at: string, detail: string | null): void {
    this.#sql.insertHistory.run(orderId, orderId, status, at, detail);
  }

  close(): void {
    this.db.close();
  }
}

/** JSON with object keys sorted, so the same body hashes the same whatever its key order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}
