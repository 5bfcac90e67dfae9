// Reservations, one per order (saga step 3): every item of a new order is reserved, or none; the
// order's end sells the reserved units (confirmed) or puts them back on sale (failed). A
// redelivered event changes nothing, and an order that failed before it was seen gets a tombstone.
import type { z } from 'zod';
import type { DB } from '../../lib/db.js';
import { createEvent, deriveId, type EventData } from '../../lib/events.js';
import { enqueueEvent } from '../../lib/outbox.js';
import { hop, journey, type Hop } from '../../lib/timeline.js';
import { stockRejected, stockReserved, type orderItem } from '../../lib/topics.js';
import { SOURCE } from './database.js';
import type { Level, StockLevels } from './levels.js';

type Item = z.infer<typeof orderItem>;
export type OrderData = EventData<typeof stockReserved>;
export type ReservationStatus = 'held' | 'rejected' | 'released' | 'sold';

export interface Reservation {
  status: ReservationStatus;
  reason: string | null;
}

export type ReserveResult = { result: 'reserved' } | { result: 'rejected'; reason: string } | { result: 'duplicate' };
export type ReleaseResult = 'released' | 'no-reservation' | 'not-held';

interface ReservationRow {
  status: ReservationStatus;
  /** The order's items, as JSON. */
  items: string;
  reason: string | null;
}

/** Every statement on reservations, with the shape of its parameters and rows: the one place they are typed. */
const statements = (db: DB) => ({
  one: db.prepare<[orderId: string], ReservationRow>('SELECT status, items, reason FROM reservations WHERE order_id = ?'),
  insert: db.prepare<[orderId: string, status: ReservationStatus, items: string, reason: string | null, createdAt: string, updatedAt: string]>(
    'INSERT INTO reservations (order_id, status, items, reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
  ),
  settle: db.prepare<[status: ReservationStatus, reason: string | null, updatedAt: string, orderId: string]>(
    'UPDATE reservations SET status = ?, reason = coalesce(?, reason), updated_at = ? WHERE order_id = ?',
  ),
});

export class Reservations {
  readonly #sql: ReturnType<typeof statements>;

  constructor(
    private readonly db: DB,
    private readonly levels: StockLevels,
  ) {
    this.#sql = statements(db);
  }

  get(orderId: string): Reservation | undefined {
    const row = this.#sql.one.get(orderId);
    return row && { status: row.status, reason: row.reason };
  }

  /**
   * Reserves every item of a new order, or none. The reservation, the new levels and the
   * stockReserved / stockRejected event commit together; a redelivered order changes nothing.
   */
  reserve(order: OrderData, earlier: readonly Hop[] = []): ReserveResult {
    const started = Date.now();
    /** The order's hops so far and this reservation's, carried on in the event. */
    const hops = (result: string) => journey(earlier, hop('stock reservation', 'stock', started, Date.now(), { result }));
    return this.db.transaction((): ReserveResult => {
      if (this.#sql.one.get(order.orderId)) return { result: 'duplicate' };
      const needs = totals(order.items);
      const shortages: string[] = [];
      for (const [productId, quantity] of needs) {
        const level = this.levels.get(productId);
        if (!level) shortages.push(`unknown product ${productId}`);
        else if (level.available < quantity) shortages.push(`not enough ${productId}: ${quantity} requested, ${level.available} available`);
      }
      const now = new Date().toISOString();
      const subject = order.orderId;
      if (shortages.length > 0) {
        const reason = `out of stock: ${shortages.join('; ')}`.slice(0, 500);
        this.#sql.insert.run(order.orderId, 'rejected', JSON.stringify(order.items), reason, now, now);
        const event = createEvent(stockRejected, { orderId: order.orderId, reason, hops: hops('rejected') }, { source: SOURCE, subject, id: deriveId('stock-rejected', order.orderId) });
        enqueueEvent(this.db, stockRejected.topic, event);
        return { result: 'rejected', reason };
      }
      for (const [productId, quantity] of needs) {
        const level = this.levels.get(productId)!;
        this.levels.write(productId, level.available - quantity, level.reserved + quantity);
      }
      this.#sql.insert.run(order.orderId, 'held', JSON.stringify(order.items), null, now, now);
      enqueueEvent(this.db, stockReserved.topic, createEvent(stockReserved, { ...order, hops: hops('reserved') }, { source: SOURCE, subject, id: deriveId('stock-reserved', order.orderId) }));
      return { result: 'reserved' };
    })();
  }

  /**
   * Compensation: the order failed after its reservation, so the units go back on sale. An order that
   * failed before we saw it gets a tombstone, so its late creation event reserves nothing.
   */
  release(orderId: string, reason: string): ReleaseResult {
    return this.settle(orderId, 'released', reason, (level, quantity) => [level.available + quantity, level.reserved - quantity]);
  }

  /** The ERP has the order: its reserved units are sold, i.e. leave the stock for good. */
  sell(orderId: string): ReleaseResult {
    return this.settle(orderId, 'sold', null, (level, quantity) => [level.available, level.reserved - quantity]);
  }

  private settle(orderId: string, status: 'released' | 'sold', reason: string | null, next: (level: Level, quantity: number) => [number, number]): ReleaseResult {
    return this.db.transaction((): ReleaseResult => {
      const now = new Date().toISOString();
      const row = this.#sql.one.get(orderId);
      if (!row) {
        this.#sql.insert.run(orderId, status, '[]', reason, now, now);
        return 'no-reservation';
      }
      if (row.status !== 'held') return 'not-held';
      for (const [productId, quantity] of totals(JSON.parse(row.items) as Item[])) {
        const level = this.levels.get(productId)!;
        const [available, reserved] = next(level, quantity);
        this.levels.write(productId, available, reserved);
      }
      this.#sql.settle.run(status, reason, now, orderId);
      return 'released';
    })();
  }
}

/** Quantities per product (an order may list a product twice). */
function totals(items: Item[]): Map<string, number> {
  const need = new Map<string, number>();
  for (const { productId, quantity } of items) need.set(productId, (need.get(productId) ?? 0) + quantity);
  return need;
}
