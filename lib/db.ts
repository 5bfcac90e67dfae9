// SQLite through better-sqlite3: WAL, a busy timeout, and forward-only migrations tracked in
// PRAGMA user_version. Each service owns one database file and is its only writer.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

export type DB = Database.Database;

export interface OpenOptions {
  /** Ordered migrations; index i moves the schema from version i to i+1. Never edit a shipped one. */
  migrations: readonly string[];
  /** Milliseconds a statement waits for another connection's lock before SQLITE_BUSY. */
  busyTimeoutMs?: number;
}

export function openDatabase(file: string, { migrations, busyTimeoutMs = 5000 }: OpenOptions): DB {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode survives a process crash (kill -9); only a power loss can undo the last commits.
  db.pragma('synchronous = NORMAL');
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
  db.pragma('foreign_keys = ON');
  migrate(db, migrations);
  return db;
}

export function migrate(db: DB, migrations: readonly string[]): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > migrations.length) {
    throw new Error(`database schema version ${current} is newer than this code knows (${migrations.length})`);
  }
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}

/** The database file of `name` inside the data directory. */
export const dataFile = (dataDir: string, name: string) => join(dataDir, `${name}.db`);
