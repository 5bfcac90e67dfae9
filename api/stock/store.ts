// The stock service's SQL: levels, reservations (one per order), bulk imports and their movements,
// and the outbox. Every change and the events announcing it commit in one transaction.
import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import { openDatabase, type DB } from '../../lib/db.js';
import { createEvent, deriveId, type EventData } from '../../lib/events.js';
import { enqueueEvent, outboxMigration } from '../../lib/outbox.js';
import { stockLevel, stockLevelTopic, stockMovement, stockRejected, stockReserved, type orderItem, type stockMovementProcessed } from '../../lib/topics.js';
import { seedLevels } from './seed.js';

export const SOURCE = '/woodytoys/stock';

const migrations = [
  `CREATE TABLE levels (
     product_id TEXT PRIMARY KEY,
     available INTEGER NOT NULL CHECK (available >= 0),
     reserved INTEGER NOT NULL CHECK (reserved >= 0),
     updated_at TEXT NOT NULL
   );
   CREATE TABLE reservations (
     order_id TEXT PRIMARY KEY,
     status TEXT NOT NULL CHECK (status IN ('held', 'rejected', 'released', 'sold')),
     items TEXT NOT NULL,
     reason TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE adjustments (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     product_id TEXT NOT NULL,
     delta INTEGER NOT NULL,
     reason TEXT NOT NULL,
     at TEXT NOT NULL
   );
   CREATE TABLE imports (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     id TEXT NOT NULL UNIQUE,
     status TEXT NOT NULL CHECK (status IN ('processing', 'completed', 'completed_with_failures')),
     total INTEGER NOT NULL,
     done INTEGER NOT NULL DEFAULT 0,
     failed INTEGER NOT NULL DEFAULT 0,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     completed_at TEXT
   );
   CREATE TABLE movements (
     movement_id TEXT PRIMARY KEY,
     import_id TEXT NOT NULL REFERENCES imports (id),
     line INTEGER NOT NULL,
     product_id TEXT NOT NULL,
     delta INTEGER NOT NULL,
     outcome TEXT CHECK (outcome IN ('recorded', 'failed')),
     reason TEXT,
     erp_reference TEXT,
     processed_at TEXT
   );
   CREATE INDEX movements_import ON movements (import_id, line);
   CREATE TABLE stock_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   ${outboxMigration}
   -- Level events are retained: only the newest unsent one per product matters (see announceLevel).
   CREATE INDEX outbox_unsent_topic ON outbox (topic) WHERE sent_at IS NULL;`,
  // Parked movements: the ERP could not be reached for all their attempts; a replay resumes them.
  `ALTER TABLE imports ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE movements ADD COLUMN parked_reason TEXT;`,
];

type Item = z.infer<typeof orderItem>;
export type OrderData = EventData<typeof stockReserved>;
export type MovementOutcome = EventData<typeof stockMovementProcessed>;

export interface Level {
  productId: string;
  available: number;
  reserved: number;
  updatedAt: string;
}

export interface NewMovement {
  productId: string;
  delta: number;
  movementId?: string | undefined;
}

export type ImportStatus = 'processing' | 'completed' | 'completed_with_failures';

export interface Import {
  id: string;
  status: ImportStatus;
  total: number;
  done: number;
  failed: number;
  /** Movements waiting for a replay of their dead letter (not counted as done or failed). */
  parked: number;
  createdAt: string;
  updatedAt: string;
  completedAt: string | null;
  /** The first failed movements, with the reason. */
  failures: { movementId: string; line: number; reason: string | null }[];
}

interface LevelRow {
  product_id: string;
  available: number;
  reserved: number;
  updated_at: string;
}
interface ImportRow {
  seq: number;
  id: string;
  status: ImportStatus;
  total: number;
  done: number;
  failed: number;
  parked: number;
  created_at: string;
  updated_at: string;
  completed_at: string | null;
}
interface MovementRow {
  movement_id: string;
  import_id: string;
  product_id: string;
  delta: number;
  outcome: string | null;
  parked_reason: string | null;
}

const toLevel = (r: LevelRow): Level => ({ productId: r.product_id, available: r.available, reserved: r.reserved, updatedAt: r.updated_at });

export type ReserveResult = { result: 'reserved' } | { result: 'rejected'; reason: string } | { result: 'duplicate' };
export type ReleaseResult = 'released' | 'no-reservation' | 'not-held';
export type MovementResult = 'applied' | 'duplicate' | 'unknown-movement';

export class StockStore {
  readonly db: DB;

  constructor(file: string, { seed = true } = {}) {
    this.db = openDatabase(file, { migrations });
    this.announceOnPublicTopics();
    if (seed) this.seed();
  }

  /**
   * Levels stored before they moved to the public namespace (lib/topics.ts) are announced there
   * once, so displays see every level without waiting for it to change. On a new database there is
   * nothing yet: the seed announces its levels itself.
   */
  private announceOnPublicTopics(): void {
    this.db.transaction(() => {
      const first = this.db.prepare("INSERT INTO stock_meta (key, value) VALUES ('public-topics', ?) ON CONFLICT DO NOTHING").run(new Date().toISOString());
      if (first.changes === 0) return;
      for (const row of this.db.prepare('SELECT * FROM levels ORDER BY product_id').all() as LevelRow[]) this.announceLevel(toLevel(row));
    })();
  }

  private seed(): void {
    this.db.transaction(() => {
      const first = this.db.prepare("INSERT INTO stock_meta (key, value) VALUES ('seeded', ?) ON CONFLICT DO NOTHING").run(new Date().toISOString());
      if (first.changes === 0) return;
      for (const { productId, available } of seedLevels) {
        if (!this.level(productId)) this.setLevel(productId, available, 0);
      }
    })();
  }

  level(productId: string): Level | undefined {
    const row = this.db.prepare('SELECT * FROM levels WHERE product_id = ?').get(productId) as LevelRow | undefined;
    return row && toLevel(row);
  }

  listLevels({ after, limit, inStock }: { after?: string | undefined; limit: number; inStock?: boolean | undefined }): { items: Level[]; more: boolean } {
    const where = ['product_id > ?'];
    if (inStock !== undefined) where.push(inStock ? 'available > 0' : 'available = 0');
    const rows = this.db.prepare(`SELECT * FROM levels WHERE ${where.join(' AND ')} ORDER BY product_id LIMIT ?`).all(after ?? '', limit + 1) as LevelRow[];
    return { items: rows.slice(0, limit).map(toLevel), more: rows.length > limit };
  }

  /** A new catalogue product gets an empty level, so it can be restocked and ordered. */
  ensureProduct(productId: string): void {
    this.db.transaction(() => {
      if (!this.level(productId)) this.setLevel(productId, 0, 0);
    })();
  }

  /** Admin: set the available count (creates the level). */
  setAvailable(productId: string, available: number, reason: string): Level {
    return this.db.transaction(() => {
      const current = this.level(productId);
      this.db.prepare('INSERT INTO adjustments (product_id, delta, reason, at) VALUES (?, ?, ?, ?)').run(productId, available - (current?.available ?? 0), reason, new Date().toISOString());
      return this.setLevel(productId, available, current?.reserved ?? 0);
    })();
  }

  /** Admin: add or remove units. undefined if the product is unknown; an Error if it would go below 0. */
  adjust(productId: string, delta: number, reason: string): Level | undefined | Error {
    return this.db.transaction(() => {
      const current = this.level(productId);
      if (!current) return undefined;
      if (current.available + delta < 0) return new Error(`only ${current.available} available; cannot remove ${-delta}`);
      this.db.prepare('INSERT INTO adjustments (product_id, delta, reason, at) VALUES (?, ?, ?, ?)').run(productId, delta, reason, new Date().toISOString());
      return this.setLevel(productId, current.available + delta, current.reserved);
    })();
  }

  /**
   * Saga step 3: reserve every item of a new order, or none. The reservation, the new levels and the
   * stockReserved / stockRejected event commit together; a redelivered order changes nothing.
   */
  reserve(order: OrderData): ReserveResult {
    return this.db.transaction((): ReserveResult => {
      if (this.db.prepare('SELECT 1 FROM reservations WHERE order_id = ?').get(order.orderId)) return { result: 'duplicate' };
      const needs = totals(order.items);
      const shortages: string[] = [];
      for (const [productId, quantity] of needs) {
        const level = this.level(productId);
        if (!level) shortages.push(`unknown product ${productId}`);
        else if (level.available < quantity) shortages.push(`not enough ${productId}: ${quantity} requested, ${level.available} available`);
      }
      const now = new Date().toISOString();
      const subject = order.orderId;
      if (shortages.length > 0) {
        const reason = `out of stock: ${shortages.join('; ')}`.slice(0, 500);
        this.db
          .prepare("INSERT INTO reservations (order_id, status, items, reason, created_at, updated_at) VALUES (?, 'rejected', ?, ?, ?, ?)")
          .run(order.orderId, JSON.stringify(order.items), reason, now, now);
        const event = createEvent(stockRejected, { orderId: order.orderId, reason }, { source: SOURCE, subject, id: deriveId('stock-rejected', order.orderId) });
        enqueueEvent(this.db, stockRejected.topic, event);
        return { result: 'rejected', reason };
      }
      for (const [productId, quantity] of needs) {
        const level = this.level(productId)!;
        this.setLevel(productId, level.available - quantity, level.reserved + quantity);
      }
      this.db
        .prepare("INSERT INTO reservations (order_id, status, items, created_at, updated_at) VALUES (?, 'held', ?, ?, ?)")
        .run(order.orderId, JSON.stringify(order.items), now, now);
      enqueueEvent(this.db, stockReserved.topic, createEvent(stockReserved, order, { source: SOURCE, subject, id: deriveId('stock-reserved', order.orderId) }));
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
      const row = this.db.prepare('SELECT status, items FROM reservations WHERE order_id = ?').get(orderId) as { status: string; items: string } | undefined;
      if (!row) {
        this.db
          .prepare('INSERT INTO reservations (order_id, status, items, reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)')
          .run(orderId, status, '[]', reason, now, now);
        return 'no-reservation';
      }
      if (row.status !== 'held') return 'not-held';
      for (const [productId, quantity] of totals(JSON.parse(row.items) as Item[])) {
        const level = this.level(productId)!;
        const [available, reserved] = next(level, quantity);
        this.setLevel(productId, available, reserved);
      }
      this.db.prepare('UPDATE reservations SET status = ?, reason = coalesce(?, reason), updated_at = ? WHERE order_id = ?').run(status, reason, now, orderId);
      return 'released';
    })();
  }

  reservation(orderId: string): { status: string; reason: string | null } | undefined {
    return this.db.prepare('SELECT status, reason FROM reservations WHERE order_id = ?').get(orderId) as { status: string; reason: string | null } | undefined;
  }

  /** Unknown product ids among `ids`. */
  unknownProducts(ids: Iterable<string>): Set<string> {
    const stmt = this.db.prepare('SELECT 1 FROM levels WHERE product_id = ?');
    return new Set([...new Set(ids)].filter((id) => !stmt.get(id)));
  }

  /** Movement ids among `ids` that an earlier import already used. */
  knownMovementIds(ids: string[]): Set<string> {
    const stmt = this.db.prepare('SELECT 1 FROM movements WHERE movement_id = ?');
    return new Set(ids.filter((id) => stmt.get(id)));
  }

  /**
   * Stores a validated batch and one stockMovement event per movement, all in one transaction: the
   * import exists with every movement queued for the workers, or not at all.
   */
  createImport(movements: NewMovement[], lines: number[] = movements.map((_, i) => i + 1)): Import {
    const id = randomUUID();
    const now = new Date().toISOString();
    this.db.transaction(() => {
      this.db
        .prepare("INSERT INTO imports (id, status, total, created_at, updated_at) VALUES (?, 'processing', ?, ?, ?)")
        .run(id, movements.length, now, now);
      const insert = this.db.prepare('INSERT INTO movements (movement_id, import_id, line, product_id, delta) VALUES (?, ?, ?, ?, ?)');
      movements.forEach((m, i) => {
        const movementId = m.movementId ?? `${id}:${i + 1}`;
        insert.run(movementId, id, lines[i] ?? i + 1, m.productId, m.delta);
        const event = createEvent(
          stockMovement,
          { importId: id, movementId, productId: m.productId, delta: m.delta },
          { source: SOURCE, subject: movementId, id: deriveId('stock-movement', movementId) },
        );
        enqueueEvent(this.db, stockMovement.topic, event);
      });
    })();
    return this.getImport(id)!;
  }

  getImport(id: string): Import | undefined {
    const row = this.db.prepare('SELECT * FROM imports WHERE id = ?').get(id) as ImportRow | undefined;
    return row && this.toImport(row);
  }

  /** Newest first. */
  listImports({ before, limit }: { before?: number | undefined; limit: number }): { items: Import[]; more: boolean; lastSeq?: number } {
    const rows = this.db
      .prepare('SELECT * FROM imports WHERE seq < ? ORDER BY seq DESC LIMIT ?')
      .all(before ?? Number.MAX_SAFE_INTEGER, limit + 1) as ImportRow[];
    const page = rows.slice(0, limit);
    return { items: page.map((r) => this.toImport(r)), more: rows.length > limit, ...(page.length ? { lastSeq: page.at(-1)!.seq } : {}) };
  }

  /**
   * A stock worker's result for one movement, applied once per movement however often it arrives:
   * progress advances, and a recorded movement changes the level. A parked movement is counted as
   * parked until a replay brings its final result.
   */
  applyMovementOutcome({ importId, movementId, outcome, erpReference, reason }: MovementOutcome): MovementResult {
    return this.db.transaction((): MovementResult => {
      const row = this.db.prepare('SELECT movement_id, import_id, product_id, delta, outcome, parked_reason FROM movements WHERE movement_id = ?').get(movementId) as MovementRow | undefined;
      if (!row || row.import_id !== importId) return 'unknown-movement';
      if (row.outcome !== null) return 'duplicate';
      const now = new Date().toISOString();
      if (outcome === 'parked') {
        this.db.prepare('UPDATE movements SET parked_reason = ? WHERE movement_id = ?').run(reason ?? 'parked', movementId);
        if (row.parked_reason === null) this.db.prepare('UPDATE imports SET parked = parked + 1, updated_at = ? WHERE id = ?').run(now, importId);
        return 'applied';
      }
      if (row.parked_reason !== null) this.db.prepare('UPDATE imports SET parked = parked - 1 WHERE id = ?').run(importId);
      this.db
        .prepare('UPDATE movements SET outcome = ?, reason = ?, erp_reference = ?, processed_at = ?, parked_reason = NULL WHERE movement_id = ?')
        .run(outcome, reason ?? null, erpReference ?? null, now, movementId);
      if (outcome === 'recorded') {
        const level = this.level(row.product_id) ?? { available: 0, reserved: 0 };
        // The ERP has the movement, so it happened; a removal beyond what we count stops at zero.
        this.setLevel(row.product_id, Math.max(0, level.available + row.delta), level.reserved);
      }
      const recorded = outcome === 'recorded' ? 1 : 0;
      this.db
        .prepare(
          `UPDATE imports SET done = done + ?, failed = failed + ?, updated_at = ?,
             status = CASE WHEN done + failed + 1 < total THEN 'processing'
                           WHEN failed + ? > 0 THEN 'completed_with_failures' ELSE 'completed' END,
             completed_at = CASE WHEN done + failed + 1 >= total THEN ? ELSE NULL END
           WHERE id = ?`,
        )
        .run(recorded, 1 - recorded, now, 1 - recorded, now, importId);
      return 'applied';
    })();
  }

  /** Writes a level and announces it on its retained topic. */
  private setLevel(productId: string, available: number, reserved: number): Level {
    const updatedAt = new Date().toISOString();
    this.db
      .prepare(
        'INSERT INTO levels (product_id, available, reserved, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (product_id) DO UPDATE SET available = excluded.available, reserved = excluded.reserved, updated_at = excluded.updated_at',
      )
      .run(productId, available, reserved, updatedAt);
    const level = { productId, available, reserved, updatedAt };
    this.announceLevel(level);
    return level;
  }

  private announceLevel(level: Level): void {
    const topic = stockLevelTopic(level.productId);
    // A retained topic only keeps its newest value, so an older level still waiting in the outbox
    // would be published for nothing: during a busy import this keeps one pending event per product.
    this.db.prepare('DELETE FROM outbox WHERE topic = ? AND sent_at IS NULL').run(topic);
    enqueueEvent(this.db, topic, createEvent(stockLevel, level, { source: SOURCE, subject: level.productId }), { retain: true });
  }

  private toImport(r: ImportRow): Import {
    const failures = r.failed
      ? (this.db
          .prepare("SELECT movement_id AS movementId, line, reason FROM movements WHERE import_id = ? AND outcome = 'failed' ORDER BY line LIMIT 20")
          .all(r.id) as Import['failures'])
      : [];
    return {
      id: r.id,
      status: r.status,
      total: r.total,
      done: r.done,
      failed: r.failed,
      parked: r.parked,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
      completedAt: r.completed_at,
      failures,
    };
  }

  /** Movements parked now, over every import. */
  countParked(): number {
    return (this.db.prepare('SELECT coalesce(sum(parked), 0) AS n FROM imports').get() as { n: number }).n;
  }

  close(): void {
    this.db.close();
  }
}

/** Quantities per product (an order may list a product twice). */
function totals(items: Item[]): Map<string, number> {
  const need = new Map<string, number>();
  for (const { productId, quantity } of items) need.set(productId, (need.get(productId) ?? 0) + quantity);
  return need;
}
