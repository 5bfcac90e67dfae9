// Several nodes (BROKER_STORE=redis): each node keeps its ingest inbox (what it acknowledged and has
// not yet routed to sessions) in a file of its own, `broker-node-<id>.db` in DATA_DIR, and replicas
// may share that directory (one volume). A node id is held by a lease in Redis for as long as its
// node runs, so two processes never share a file: a second one with the same id waits, then refuses
// to start. A file whose id nobody holds (its node is gone and was not started again: a container
// replaced, a replica scaled away) is adopted by a node that is still there: it takes the lease
// itself, routes the file's inbox through its own broker, and deletes the file.
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { ACQUIRE, RELEASE, RENEW } from '../lib/leases/redis.js';
import { newToken } from '../lib/leases/store.js';
import type { Logger } from '../lib/log.js';

/** The inbox file's name for a node (lib/db.ts's dataFile adds `.db`). */
export const inboxName = (nodeId: string) => `broker-node-${nodeId}`;
const INBOX_FILE = /^broker-node-([A-Za-z0-9_.-]{1,64})\.db$/;

type Scripted = Redis & {
  leaseAcquire(key: string, epochKey: string, token: string, ttl: number): Promise<number>;
  leaseRenew(key: string, token: string, ttl: number): Promise<number>;
  leaseRelease(key: string, token: string): Promise<number>;
};

export interface NodeLeaseOptions {
  url: string;
  nodeId: string;
  /** How long a node's id stays held after its last renewal (it renews every third of it). */
  ttlMs: number;
  log: Logger;
}

/** The key that holds a node's id while it runs (cluster-bounds.ts counts a node's clients only then). */
export const nodeLeaseKey = (nodeId: string) => `woodytoys:broker:node:${nodeId}`;

export class NodeLease {
  readonly #redis: Scripted;
  readonly #token = newToken();
  readonly #nodeId: string;
  readonly #ttlMs: number;
  readonly #log: Logger;
  #timers: NodeJS.Timeout[] = [];
  /** Ids whose file had no holder at the previous look (see adoptOrphans). */
  #unheldBefore = new Set<string>();

  constructor({ url, nodeId, ttlMs, log }: NodeLeaseOptions) {
    this.#nodeId = nodeId;
    this.#ttlMs = ttlMs;
    this.#log = log;
    this.#redis = new Redis(url, {
      // A late answer about who holds an id is a wrong one: fail fast while Redis is away.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: Math.max(500, Math.round(ttlMs / 4)),
      retryStrategy: (times) => Math.min(times * 200, 2000),
    }) as Scripted;
    this.#redis.on('error', () => {
      // Reported through failing commands; ioredis reconnects by itself.
    });
    this.#redis.defineCommand('leaseAcquire', { numberOfKeys: 2, lua: ACQUIRE });
    this.#redis.defineCommand('leaseRenew', { numberOfKeys: 1, lua: RENEW });
    this.#redis.defineCommand('leaseRelease', { numberOfKeys: 1, lua: RELEASE });
  }

  #key = nodeLeaseKey;
  #take = (nodeId: string, token: string) => this.#redis.leaseAcquire(this.#key(nodeId), `${this.#key(nodeId)}:epoch`, token, this.#ttlMs).then((epoch) => epoch > 0);

  /**
   * Takes this node's id, before its file is opened. While another process holds it (a node still
   * running, or a node adopting the file of this id), waits up to `waitMs`, then throws.
   */
  async claim(waitMs: number): Promise<void> {
    if (this.#redis.status !== 'ready') {
      await new Promise<void>((resolve, reject) => {
        this.#redis.once('ready', resolve);
        this.#redis.once('end', () => reject(new Error('redis connection ended')));
      });
    }
    const deadline = Date.now() + waitMs;
    while (!(await this.#take(this.#nodeId, this.#token))) {
      if (Date.now() >= deadline) {
        throw new Error(`BROKER_NODE_ID ${this.#nodeId} is held by another running broker node: give each node an id of its own`);
      }
      await new Promise((r) => setTimeout(r, Math.min(500, this.#ttlMs / 4)));
    }
  }

  /**
   * Renews this node's id every third of its time. After a Redis outage longer than that the lease
   * is gone: taken again at once. `lost` is called if another process took it meanwhile (then this
   * node must stop: its file may be adopted).
   */
  keep(lost: () => void): void {
    const timer = setInterval(() => {
      this.#redis
        .leaseRenew(this.#key(this.#nodeId), this.#token, this.#ttlMs)
        .then(async (renewed) => {
          if (renewed === 1 || (await this.#take(this.#nodeId, this.#token))) return;
          lost();
        })
        .catch((err: Error) => this.#log.debug({ err: err.message }, 'node id not renewed (redis away?); trying again'));
    }, this.#ttlMs / 3);
    timer.unref();
    this.#timers.push(timer);
  }

  /**
   * Looks for inbox files in `dir` whose node id nobody holds, twice in a row (a node that comes
   * back from an outage of Redis takes its id back in between), and adopts each: takes its id,
   * calls `route` with the file, deletes the file, frees the id. Returns the ids adopted.
   */
  async adoptOrphans(dir: string, route: (file: string, nodeId: string) => Promise<number>): Promise<string[]> {
    const ids = readdirSync(dir)
      .map((name) => INBOX_FILE.exec(name)?.[1])
      .filter((id): id is string => id !== undefined && id !== this.#nodeId);
    const unheld = new Set<string>();
    const adopted: string[] = [];
    for (const id of ids) {
      if ((await this.#redis.exists(this.#key(id))) === 1) continue;
      if (!this.#unheldBefore.has(id)) {
        unheld.add(id);
        continue;
      }
      const token = newToken();
      if (!(await this.#take(id, token))) continue;
      try {
        const file = join(dir, `${inboxName(id)}.db`);
        const rows = await route(file, id);
        for (const suffix of ['', '-wal', '-shm']) rmSync(`${file}${suffix}`, { force: true });
        this.#log.warn({ node: id, messages: rows }, 'adopted the inbox of a broker node that is gone');
        adopted.push(id);
      } finally {
        await this.#redis.leaseRelease(this.#key(id), token);
      }
    }
    this.#unheldBefore = unheld;
    return adopted;
  }

  /** adoptOrphans every half of the lease's time; failures are logged and tried again. */
  adoptEvery(dir: string, route: (file: string, nodeId: string) => Promise<number>): void {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      this.adoptOrphans(dir, route)
        .catch((err: Error) => this.#log.warn({ err: err.message }, 'adopting the inboxes of departed nodes failed; trying again'))
        .finally(() => (running = false));
    }, this.#ttlMs / 2);
    timer.unref();
    this.#timers.push(timer);
  }

  /** Stops renewing and adopting, frees this node's id (its file stays, for its next start). */
  async close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    await this.#redis.leaseRelease(this.#key(this.#nodeId), this.#token).catch(() => undefined);
    this.#redis.disconnect();
  }
}
