// The lease store on one host: a SQLite file shared by every worker process there. Each acquire,
// renew and release is one atomic statement judged by SQLite's clock; a short busy timeout keeps a
// contended write from blocking the event loop for long (the caller treats SQLITE_BUSY as "not now").
import { openDatabase, type DB } from '../db.js';
import { newToken, type Grant, type LeaseStore, type Member } from './store.js';

const migrations = [
  `CREATE TABLE IF NOT EXISTS leases (
     resource TEXT NOT NULL,
     partition INTEGER NOT NULL,
     owner TEXT,
     token TEXT,
     epoch INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     PRIMARY KEY (resource, partition)
   ) WITHOUT ROWID;
   CREATE TABLE IF NOT EXISTS members (
     resource TEXT NOT NULL,
     owner TEXT NOT NULL,
     wanted INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     PRIMARY KEY (resource, owner)
   ) WITHOUT ROWID;`,
];

/** The store's clock, in ms: one value for the whole statement. */
const NOW = `CAST(unixepoch('subsec') * 1000 AS INTEGER)`;

export interface SqliteLeaseStoreOptions {
  file: string;
  /** Names the capacity the partitions divide (several resources can share one file). */
  resource?: string;
  /** How long a statement waits for another process's write lock. */
  busyTimeoutMs?: number;
}

export class SqliteLeaseStore implements LeaseStore {
  readonly kind = 'sqlite' as const;
  readonly #db: DB;
  readonly #resource: string;
  readonly #sql;

  constructor({ file, resource = 'erp', busyTimeoutMs = 50 }: SqliteLeaseStoreOptions) {
    // Opening (WAL switch, migration) may wait for a peer longer than a lease statement should.
    this.#db = openDatabase(file, { migrations, busyTimeoutMs: 5000 });
    this.#db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    this.#resource = resource;
    this.#sql = {
      // Insert a free partition, or take over an expired lease; nothing when a live lease exists.
      acquire: this.#db.prepare<[{ resource: string; partition: number; owner: string; token: string; ttl: number }], { epoch: number }>(
        `INSERT INTO leases (resource, partition, owner, token, epoch, expires_at)
         VALUES (@resource, @partition, @owner, @token, 1, ${NOW} + @ttl)
         ON CONFLICT (resource, partition) DO UPDATE
           SET owner = excluded.owner, token = excluded.token, epoch = leases.epoch + 1, expires_at = excluded.expires_at
           WHERE leases.expires_at <= ${NOW}
         RETURNING epoch`,
      ),
      renew: this.#db.prepare(
        `UPDATE leases SET expires_at = ${NOW} + @ttl
         WHERE resource = @resource AND partition = @partition AND token = @token AND expires_at > ${NOW}`,
      ),
      release: this.#db.prepare(
        `UPDATE leases SET expires_at = 0, owner = NULL, token = NULL
         WHERE resource = @resource AND partition = @partition AND token = @token AND expires_at > ${NOW}`,
      ),
      announce: this.#db.prepare(
        `INSERT INTO members (resource, owner, wanted, expires_at) VALUES (@resource, @owner, @wanted, ${NOW} + @ttl)
         ON CONFLICT (resource, owner) DO UPDATE SET wanted = excluded.wanted, expires_at = excluded.expires_at`,
      ),
      members: this.#db.prepare<[resource: string], Member>(`SELECT owner, wanted FROM members WHERE resource = ? AND expires_at > ${NOW} ORDER BY owner`),
      prune: this.#db.prepare(`DELETE FROM members WHERE resource = ? AND expires_at <= ${NOW}`),
      withdraw: this.#db.prepare('DELETE FROM members WHERE resource = ? AND owner = ?'),
    };
  }

  async acquire(partition: number, owner: string, ttlMs: number): Promise<Grant | undefined> {
    const token = newToken();
    const row = this.#sql.acquire.get({ resource: this.#resource, partition, owner, token, ttl: Math.round(ttlMs) });
    return row && { partition, token, epoch: row.epoch };
  }

  async renew(grant: Grant, ttlMs: number): Promise<boolean> {
    return this.#sql.renew.run({ resource: this.#resource, partition: grant.partition, token: grant.token, ttl: Math.round(ttlMs) }).changes === 1;
  }

  async release(grant: Grant): Promise<boolean> {
    return this.#sql.release.run({ resource: this.#resource, partition: grant.partition, token: grant.token }).changes === 1;
  }

  async announce(owner: string, wanted: number, ttlMs: number): Promise<Member[]> {
    return this.#db.transaction(() => {
      this.#sql.announce.run({ resource: this.#resource, owner, wanted, ttl: Math.round(ttlMs) });
      this.#sql.prune.run(this.#resource);
      return this.#sql.members.all(this.#resource);
    }).immediate();
  }

  async withdraw(owner: string): Promise<void> {
    this.#sql.withdraw.run(this.#resource, owner);
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }
}
