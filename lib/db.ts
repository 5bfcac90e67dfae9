// SQLite through better-sqlite3: WAL, a busy timeout, and forward-only migrations tracked in
// PRAGMA user_version. Each service owns one database file and is its only writer. Statements are
// prepared once per SQL text: each store prepares its statements in one `statements` block, typed
// with their parameters and rows (`db.prepare<Params, Row>(sql)`), and SQL built per call is parsed
// the first time only (a prepared statement is shared by everyone using the same text, so nobody
// switches one to raw, pluck or expand mode: write distinct SQL for that).
import type { Statement } from 'better-sqlite3';
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

export type DB = Database.Database;

/** SQL, or a function for a migration that must rewrite data SQL alone cannot (it runs in the migration's transaction). */
export type Migration = string | ((db: DB) => void);

export interface OpenOptions {
  /** Ordered migrations; index i moves the schema from version i to i+1. Never edit a shipped one. */
  migrations: readonly Migration[];
  /** Milliseconds a statement waits for another connection's lock before SQLITE_BUSY. */
  busyTimeoutMs?: number;
  /**
   * For a file whose size swings (a queue that fills and drains): keep what lets it give space back,
   * pages that can be freed a few at a time (incremental vacuum, see broker/reclaim.ts) and a WAL file
   * cut back to this many bytes after each checkpoint. A database made without it is rebuilt once.
   */
  shrinkable?: { walBytes: number };
  /** Most memory SQLite's page cache may take for this connection (left out: better-sqlite3's build default, 16 MiB). */
  cacheBytes?: number;
}

export function openDatabase(file: string, { migrations, busyTimeoutMs = 5000, shrinkable, cacheBytes }: OpenOptions): DB {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  if (shrinkable && db.pragma('auto_vacuum', { simple: true }) !== 2) {
    // Only takes effect on a database with no tables yet, or after a VACUUM (which rebuilds the file).
    db.pragma('auto_vacuum = INCREMENTAL');
    db.exec('VACUUM');
  }
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode survives a process crash (kill -9); only a power loss can undo the last commits.
  db.pragma('synchronous = NORMAL');
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
  db.pragma('foreign_keys = ON');
  if (shrinkable) db.pragma(`journal_size_limit = ${Math.floor(shrinkable.walBytes)}`);
  // A negative cache_size is in KiB.
  if (cacheBytes !== undefined) db.pragma(`cache_size = -${Math.max(64, Math.floor(cacheBytes / 1024))}`);
  rememberStatements(db);
  migrate(db, migrations);
  return db;
}

/**
 * A UUID (version 7: milliseconds since 1970, then random bits) for rows written in time order:
 * consecutive ids sort together, so an insert lands beside the previous one in every index on
 * the id instead of on a random page, and a commit writes fewer pages.
 */
export function timeOrderedId(now = Date.now()): string {
  // The random part from randomUUID (Node keeps a pool of entropy for it; randomBytes asks each time).
  const random = randomUUID();
  const time = now.toString(16).padStart(12, '0');
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${random.slice(15, 18)}-${random.slice(19)}`;
}

/** Makes db.prepare() return the statement already prepared for the same SQL. */
function rememberStatements(db: DB): void {
  const prepare = db.prepare.bind(db);
  const prepared = new Map<string, Statement>();
  db.prepare = ((sql: string) => {
    let statement = prepared.get(sql);
    if (!statement) {
      statement = prepare(sql);
      // SQL built from input would grow this without bound: past a thousand texts, no more are kept.
      if (prepared.size < 1000) prepared.set(sql, statement);
    }
    return statement;
  }) as DB['prepare'];
}

export function migrate(db: DB, migrations: readonly Migration[]): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > migrations.length) {
    throw new Error(`database schema version ${current} is newer than this code knows (${migrations.length})`);
  }
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      const step = migrations[v]!;
      if (typeof step === 'string') db.exec(step);
      else step(db);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

/** The database file of `name` inside the data directory. */
export const dataFile = (dataDir: string, name: string) => join(dataDir, `${name}.db`);
