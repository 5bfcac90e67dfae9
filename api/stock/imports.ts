// Bulk imports of stock movements: a validated batch is stored with one stockMovement event per
// movement (the stock workers take them to the ERP), and the workers' results advance the import's
// progress and, for a movement the ERP recorded, the product's level.
import { randomUUID } from 'node:crypto';
import type { DB } from '../../lib/db.js';
import { createEvent, deriveId, type EventData } from '../../lib/events.js';
import { enqueueEvent } from '../../lib/outbox.js';
import { stockMovement, type stockMovementProcessed } from '../../lib/topics.js';
import { SOURCE } from './database.js';
import type { LineError } from './import-body.js';
import type { StockLevels } from './levels.js';

export type MovementOutcome = EventData<typeof stockMovementProcessed>;
export type MovementResult = 'applied' | 'duplicate' | 'unknown-movement';

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
  outcome: 'recorded' | 'failed' | null;
  parked_reason: string | null;
}

/** Every statement on imports and movements, with the shape of its parameters and rows: the one place they are typed. */
const statements = (db: DB) => ({
  one: db.prepare<[id: string], ImportRow>('SELECT * FROM imports WHERE id = ?'),
  page: db.prepare<[before: number, limit: number], ImportRow>('SELECT * FROM imports WHERE seq < ? ORDER BY seq DESC LIMIT ?'),
  failures: db.prepare<[importId: string], Import['failures'][number]>(
    "SELECT movement_id AS movementId, line, reason FROM movements WHERE import_id = ? AND outcome = 'failed' ORDER BY line LIMIT 20",
  ),
  parked: db.prepare<[], { n: number }>('SELECT coalesce(sum(parked), 0) AS n FROM imports'),
  insert: db.prepare<[id: string, total: number, createdAt: string, updatedAt: string]>(
    "INSERT INTO imports (id, status, total, created_at, updated_at) VALUES (?, 'processing', ?, ?, ?)",
  ),
  movement: db.prepare<[movementId: string], MovementRow>('SELECT movement_id, import_id, product_id, delta, outcome, parked_reason FROM movements WHERE movement_id = ?'),
  insertMovement: db.prepare<[movementId: string, importId: string, line: number, productId: string, delta: number]>(
    'INSERT INTO movements (movement_id, import_id, line, product_id, delta) VALUES (?, ?, ?, ?, ?)',
  ),
  park: db.prepare<[reason: string, movementId: string]>('UPDATE movements SET parked_reason = ? WHERE movement_id = ?'),
  countParked: db.prepare<[updatedAt: string, importId: string]>('UPDATE imports SET parked = parked + 1, updated_at = ? WHERE id = ?'),
  countUnparked: db.prepare<[importId: string]>('UPDATE imports SET parked = parked - 1 WHERE id = ?'),
  settleMovement: db.prepare<[outcome: 'recorded' | 'failed', reason: string | null, erpReference: string | null, processedAt: string, movementId: string]>(
    'UPDATE movements SET outcome = ?, reason = ?, erp_reference = ?, processed_at = ?, parked_reason = NULL WHERE movement_id = ?',
  ),
  advance: db.prepare<[done: number, failed: number, updatedAt: string, failedNow: number, completedAt: string, importId: string]>(
    `UPDATE imports SET done = done + ?, failed = failed + ?, updated_at = ?,
       status = CASE WHEN done + failed + 1 < total THEN 'processing'
                     WHEN failed + ? > 0 THEN 'completed_with_failures' ELSE 'completed' END,
       completed_at = CASE WHEN done + failed + 1 >= total THEN ? ELSE NULL END
     WHERE id = ?`,
  ),
});

export class StockImports {
  readonly #sql: ReturnType<typeof statements>;

  constructor(
    private readonly db: DB,
    private readonly levels: StockLevels,
  ) {
    this.#sql = statements(db);
  }

  /**
   * What refuses movements that match the schema, which only the stored state can tell: unknown
   * products, and movement ids already imported or given twice in this batch.
   */
  refusals(movements: NewMovement[], lines: number[]): LineError[] {
    const errors: LineError[] = [];
    const unknown = this.levels.unknownProducts(movements.map((m) => m.productId));
    const seen = new Set<string>();
    movements.forEach((m, i) => {
      const line = lines[i]!;
      if (unknown.has(m.productId)) errors.push({ line, message: `productId: unknown product ${m.productId}` });
      if (m.movementId === undefined) return;
      if (this.#sql.movement.get(m.movementId)) errors.push({ line, message: `movementId: ${m.movementId} was already imported` });
      else if (seen.has(m.movementId)) errors.push({ line, message: `movementId: ${m.movementId} appears twice in this import` });
      seen.add(m.movementId);
    });
    return errors;
  }

  /**
   * Stores a validated batch and one stockMovement event per movement, all in one transaction: the
   * import exists with every movement queued for the workers, or not at all.
   */
  create(movements: NewMovement[], lines: number[] = movements.map((_, i) => i + 1)): Import {
    const id = randomUUID();
    const now = new Date().toISOString();
    this.db.transaction(() => {
      this.#sql.insert.run(id, movements.length, now, now);
      movements.forEach((m, i) => {
        const movementId = m.movementId ?? `${id}:${i + 1}`;
        this.#sql.insertMovement.run(movementId, id, lines[i] ?? i + 1, m.productId, m.delta);
        const event = createEvent(
          stockMovement,
          { importId: id, movementId, productId: m.productId, delta: m.delta },
          { source: SOURCE, subject: movementId, id: deriveId('stock-movement', movementId) },
        );
        enqueueEvent(this.db, stockMovement.topic, event);
      });
    })();
    return this.get(id)!;
  }

  get(id: string): Import | undefined {
    const row = this.#sql.one.get(id);
    return row && this.toImport(row);
  }

  /** Newest first; `before` is the position of the last import of the previous page. */
  list({ before, limit }: { before?: number | undefined; limit: number }): { items: Import[]; more: boolean; lastSeq?: number } {
    const rows = this.#sql.page.all(before ?? Number.MAX_SAFE_INTEGER, limit + 1);
    const page = rows.slice(0, limit);
    return { items: page.map((r) => this.toImport(r)), more: rows.length > limit, ...(page.length ? { lastSeq: page.at(-1)!.seq } : {}) };
  }

  /**
   * A stock worker's result for one movement, applied once per movement however often it arrives:
   * progress advances, and a recorded movement changes the level. A parked movement is counted as
   * parked until a replay brings its final result.
   */
  applyOutcome({ importId, movementId, outcome, erpReference, reason }: MovementOutcome): MovementResult {
    return this.db.transaction((): MovementResult => {
      const row = this.#sql.movement.get(movementId);
      if (!row || row.import_id !== importId) return 'unknown-movement';
      if (row.outcome !== null) return 'duplicate';
      const now = new Date().toISOString();
      if (outcome === 'parked') {
        this.#sql.park.run(reason ?? 'parked', movementId);
        if (row.parked_reason === null) this.#sql.countParked.run(now, importId);
        return 'applied';
      }
      if (row.parked_reason !== null) this.#sql.countUnparked.run(importId);
      this.#sql.settleMovement.run(outcome, reason ?? null, erpReference ?? null, now, movementId);
      if (outcome === 'recorded') {
        const level = this.levels.get(row.product_id) ?? { available: 0, reserved: 0 };
        // The ERP has the movement, so it happened; a removal beyond what we count stops at zero.
        this.levels.write(row.product_id, Math.max(0, level.available + row.delta), level.reserved);
      }
      const recorded = outcome === 'recorded' ? 1 : 0;
      this.#sql.advance.run(recorded, 1 - recorded, now, 1 - recorded, now, importId);
      return 'applied';
    })();
  }

  /** Movements parked now, over every import. */
  countParked(): number {
    return this.#sql.parked.get()!.n;
  }

  private toImport(r: ImportRow): Import {
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
      failures: r.failed ? this.#sql.failures.all(r.id) : [],
    };
  }
}
