// The ERP's system of record: every accepted operation exactly once, keyed by its operation id.
import { openDatabase, type DB } from '../../lib/db.js';
import { committed } from '../../lib/group-commit.js';

const migrations = [
  `CREATE TABLE records (
     operation_id TEXT PRIMARY KEY,
     kind TEXT NOT NULL,
     reference TEXT NOT NULL,
     payload TEXT NOT NULL,
     accepted_at INTEGER NOT NULL
   );
   CREATE INDEX records_kind ON records (kind);`,
];

export interface ErpRecord {
  operationId: string;
  kind: string;
  reference: string;
  payload: unknown;
  acceptedAt: string;
}

interface RecordRow {
  operation_id: string;
  kind: string;
  reference: string;
  payload: string;
  accepted_at: number;
}

const toRecord = (r: RecordRow): ErpRecord => ({
  operationId: r.operation_id,
  kind: r.kind,
  reference: r.reference,
  payload: JSON.parse(r.payload) as unknown,
  acceptedAt: new Date(r.accepted_at).toISOString(),
});

/** Every statement of the ERP, with the shape of its parameters and rows: the one place they are typed. */
const statements = (db: DB) => ({
  one: db.prepare<[operationId: string], RecordRow>('SELECT * FROM records WHERE operation_id = ?'),
  countByKind: db.prepare<[], { kind: string; n: number }>('SELECT kind, count(*) AS n FROM records GROUP BY kind'),
  insert: db.prepare<[operationId: string, kind: string, reference: string, payload: string, acceptedAt: number]>(
    'INSERT INTO records (operation_id, kind, reference, payload, accepted_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
  ),
});

export class ErpStore {
  readonly db: DB;
  readonly #sql: ReturnType<typeof statements>;
  /**
   * Records per kind, counted once at start and then as inserts commit (the store is the file's only
   * writer): the figures that tests and demos poll every few milliseconds cost no scan of the table.
   */
  readonly #counts = new Map<string, number>();

  constructor(file: string) {
    this.db = openDatabase(file, { migrations });
    this.#sql = statements(this.db);
    for (const { kind, n } of this.#sql.countByKind.all()) this.#counts.set(kind, n);
  }

  /**
   * Records the operation unless it is already there; says which. A transaction, so that with
   * group commit (main.ts) the calls of one turn share a commit and the answer waits for it.
   */
  record(operationId: string, kind: string, payload: unknown): { record: ErpRecord; duplicate: boolean } {
    const result = (this.#recordTx ??= this.db.transaction(this.#insert))(operationId, kind, payload);
    // Counted once committed: a turn whose commit fails loses its rows, and they were never counted.
    if (!result.duplicate) committed(this.db).then(() => this.#counts.set(kind, (this.#counts.get(kind) ?? 0) + 1), () => {});
    return result;
  }

  /**
   * The transaction, made once, at the first call (after main.ts set up group commit on the
   * database): a better-sqlite3 transaction function made per call cost more than the insert.
   */
  #recordTx: ((operationId: string, kind: string, payload: unknown) => { record: ErpRecord; duplicate: boolean }) | undefined;
  readonly #insert = (operationId: string, kind: string, payload: unknown): { record: ErpRecord; duplicate: boolean } => {
    const reference = `ERP-${operationId.slice(-12).toUpperCase()}`;
    const acceptedAt = Date.now();
    if (this.#sql.insert.run(operationId, kind, reference, JSON.stringify(payload), acceptedAt).changes === 1) {
      // The payload as given (it came from JSON and goes back as JSON), not parsed again from what was just serialised.
      return { record: { operationId, kind, reference, payload, acceptedAt: new Date(acceptedAt).toISOString() }, duplicate: false };
    }
    return { record: this.get(operationId)!, duplicate: true };
  };

  get(operationId: string): ErpRecord | undefined {
    const row = this.#sql.one.get(operationId);
    return row && toRecord(row);
  }

  countByKind(): Record<string, number> {
    return Object.fromEntries(this.#counts);
  }

  close(): void {
    this.db.close();
  }
}
