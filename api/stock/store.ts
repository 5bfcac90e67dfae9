// The stock service's store: levels, reservations and imports (one file each) over one database,
// so a change in one and the levels it moves commit together. This class opens the database, runs
// what a first start needs, and is the face the consumers and the entry point use.
import type { Hop } from '../../lib/timeline.js';
import type { DB } from '../../lib/db.js';
import { openStockDatabase } from './database.js';
import { StockImports, type Import, type MovementOutcome, type MovementResult } from './imports.js';
import { StockLevels, type Level } from './levels.js';
import { Reservations, type OrderData, type ReleaseResult, type ReserveResult } from './reservations.js';
import { seedLevels } from './seed.js';

export { SOURCE } from './database.js';

export class StockStore {
  readonly db: DB;
  readonly levels: StockLevels;
  readonly reservations: Reservations;
  readonly imports: StockImports;

  constructor(file: string, { seed = true } = {}) {
    this.db = openStockDatabase(file);
    this.levels = new StockLevels(this.db);
    this.reservations = new Reservations(this.db, this.levels);
    this.imports = new StockImports(this.db, this.levels);
    // Levels stored before they moved to the public namespace (lib/topics.ts) are announced there
    // once, so displays see every level without waiting for it to change. On a new database there
    // is nothing yet: the seed announces its levels itself.
    this.once('public-topics', () => this.levels.announceAll());
    if (seed) this.once('seeded', () => seedLevels.forEach(({ productId, available }) => this.levels.ensure(productId, available)));
  }

  /** Runs `first` in the transaction that records `key`, the first time only (per database). */
  private once(key: string, first: () => void): void {
    this.db.transaction(() => {
      const fresh = this.db.prepare<[key: string, at: string]>('INSERT INTO stock_meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING').run(key, new Date().toISOString());
      if (fresh.changes === 1) first();
    })();
  }

  // What the consumers (the saga, the workers' results, new products), the entry point and the tests call.
  level(productId: string): Level | undefined {
    return this.levels.get(productId);
  }
  setAvailable(productId: string, available: number, reason: string): Level {
    return this.levels.setAvailable(productId, available, reason);
  }
  /** A new catalogue product gets an empty level, so it can be restocked and ordered. */
  ensureProduct(productId: string): void {
    this.levels.ensure(productId);
  }
  reserve(order: OrderData, earlier?: readonly Hop[]): ReserveResult {
    return this.reservations.reserve(order, earlier);
  }
  release(orderId: string, reason: string): ReleaseResult {
    return this.reservations.release(orderId, reason);
  }
  sell(orderId: string): ReleaseResult {
    return this.reservations.sell(orderId);
  }
  applyMovementOutcome(outcome: MovementOutcome): MovementResult {
    return this.imports.applyOutcome(outcome);
  }
  getImport(id: string): Import | undefined {
    return this.imports.get(id);
  }
  countParked(): number {
    return this.imports.countParked();
  }

  close(): void {
    this.db.close();
  }
}
