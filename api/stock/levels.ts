// Stock levels, one per product: `available` can be ordered, `reserved` is held by orders the ERP
// has not confirmed yet. Each write is announced on the product's retained level topic, in the
// writer's transaction; admins set or adjust a level, and every adjustment is kept.
import type { DB } from '../../lib/db.js';
import { createEvent } from '../../lib/events.js';
import { enqueueEvent } from '../../lib/outbox.js';
import { stockLevel, stockLevelTopic } from '../../lib/topics.js';
import { SOURCE } from './database.js';

export interface Level {
  productId: string;
  available: number;
  reserved: number;
  updatedAt: string;
}

interface LevelRow {
  product_id: string;
  available: number;
  reserved: number;
  updated_at: string;
}

const toLevel = (r: LevelRow): Level => ({ productId: r.product_id, available: r.available, reserved: r.reserved, updatedAt: r.updated_at });

/** Every statement on levels, with the shape of its parameters and rows: the one place they are typed. */
const statements = (db: DB) => ({
  one: db.prepare<[productId: string], LevelRow>('SELECT * FROM levels WHERE product_id = ?'),
  all: db.prepare<[], LevelRow>('SELECT * FROM levels ORDER BY product_id'),
  page: {
    any: db.prepare<[after: string, limit: number], LevelRow>('SELECT * FROM levels WHERE product_id > ? ORDER BY product_id LIMIT ?'),
    inStock: db.prepare<[after: string, limit: number], LevelRow>('SELECT * FROM levels WHERE product_id > ? AND available > 0 ORDER BY product_id LIMIT ?'),
    outOfStock: db.prepare<[after: string, limit: number], LevelRow>('SELECT * FROM levels WHERE product_id > ? AND available = 0 ORDER BY product_id LIMIT ?'),
  },
  write: db.prepare<[productId: string, available: number, reserved: number, updatedAt: string]>(
    'INSERT INTO levels (product_id, available, reserved, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (product_id) DO UPDATE SET available = excluded.available, reserved = excluded.reserved, updated_at = excluded.updated_at',
  ),
  adjustment: db.prepare<[productId: string, delta: number, reason: string, at: string]>('INSERT INTO adjustments (product_id, delta, reason, at) VALUES (?, ?, ?, ?)'),
  dropUnsent: db.prepare<[topic: string]>('DELETE FROM outbox WHERE topic = ? AND sent_at IS NULL'),
});

export class StockLevels {
  readonly #sql: ReturnType<typeof statements>;

  constructor(private readonly db: DB) {
    this.#sql = statements(db);
  }

  get(productId: string): Level | undefined {
    const row = this.#sql.one.get(productId);
    return row && toLevel(row);
  }

  /** One page in product id order; `inStock` keeps only levels with (true) or without (false) units available. */
  list({ after, limit, inStock }: { after?: string | undefined; limit: number; inStock?: boolean | undefined }): { items: Level[]; more: boolean } {
    const page = inStock === undefined ? this.#sql.page.any : inStock ? this.#sql.page.inStock : this.#sql.page.outOfStock;
    const rows = page.all(after ?? '', limit + 1);
    return { items: rows.slice(0, limit).map(toLevel), more: rows.length > limit };
  }

  /** Unknown product ids among `ids`. */
  unknownProducts(ids: Iterable<string>): Set<string> {
    return new Set([...new Set(ids)].filter((id) => !this.#sql.one.get(id)));
  }

  /** A product without a level gets one with `available` units (a new catalogue product: none, so it can be restocked and ordered). */
  ensure(productId: string, available = 0): void {
    this.db.transaction(() => {
      if (!this.get(productId)) this.write(productId, available, 0);
    })();
  }

  /** Admin: set the available count (creates the level). */
  setAvailable(productId: string, available: number, reason: string): Level {
    return this.db.transaction(() => {
      const current = this.get(productId);
      this.#sql.adjustment.run(productId, available - (current?.available ?? 0), reason, new Date().toISOString());
      return this.write(productId, available, current?.reserved ?? 0);
    })();
  }

  /** Admin: add or remove units. undefined if the product is unknown; an Error if it would go below 0. */
  adjust(productId: string, delta: number, reason: string): Level | undefined | Error {
    return this.db.transaction(() => {
      const current = this.get(productId);
      if (!current) return undefined;
      if (current.available + delta < 0) return new Error(`only ${current.available} available; cannot remove ${-delta}`);
      this.#sql.adjustment.run(productId, delta, reason, new Date().toISOString());
      return this.write(productId, current.available + delta, current.reserved);
    })();
  }

  /** Writes a level and announces it on its retained topic; inside the caller's transaction. */
  write(productId: string, available: number, reserved: number): Level {
    const updatedAt = new Date().toISOString();
    this.#sql.write.run(productId, available, reserved, updatedAt);
    const level = { productId, available, reserved, updatedAt };
    this.announce(level);
    return level;
  }

  /** Announces every level again (see StockStore: once, when levels moved to the public topics). */
  announceAll(): void {
    for (const row of this.#sql.all.all()) this.announce(toLevel(row));
  }

  private announce(level: Level): void {
    const topic = stockLevelTopic(level.productId);
    // A retained topic only keeps its newest value, so an older level still waiting in the outbox
    // would be published for nothing: during a busy import this keeps one pending event per product.
    this.#sql.dropUnsent.run(topic);
    enqueueEvent(this.db, topic, createEvent(stockLevel, level, { source: SOURCE, subject: level.productId }), { retain: true });
  }
}
