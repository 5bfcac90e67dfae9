// The lease store across hosts: Redis. Acquire is SET NX PX with a random token (plus the fencing
// epoch, in the same script so the two cannot disagree); renew and release compare the token first,
// in Lua, so a process whose lease expired can never extend or free the next holder's. Expiry is
// Redis's own (PX), the member count uses Redis's clock (TIME).
import { Redis } from 'ioredis';
import { newToken, type Grant, type LeaseStore } from './store.js';

const ACQUIRE = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0`;

const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

const ANNOUNCE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])`;

type Scripted = Redis & {
  leaseAcquire(key: string, epochKey: string, token: string, ttl: number): Promise<number>;
  leaseRenew(key: string, token: string, ttl: number): Promise<number>;
  leaseRelease(key: string, token: string): Promise<number>;
  leaseAnnounce(key: string, owner: string, ttl: number): Promise<number>;
};

export interface RedisLeaseStoreOptions {
  url: string;
  resource?: string;
  /** A command that takes longer fails, and the keeper falls back to what it holds (then reserved capacity). */
  commandTimeoutMs?: number;
}

export class RedisLeaseStore implements LeaseStore {
  readonly kind = 'redis' as const;
  readonly #redis: Scripted;
  readonly #prefix: string;

  constructor({ url, resource = 'erp', commandTimeoutMs = 500 }: RedisLeaseStoreOptions) {
    this.#redis = new Redis(url, {
      // Fail fast while Redis is away instead of queueing: a late lease answer is a wrong one.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: commandTimeoutMs,
      retryStrategy: (times) => Math.min(times * 200, 2000),
      lazyConnect: false,
    }) as Scripted;
    this.#redis.on('error', () => {
      // Reported through failing commands; ioredis reconnects by itself.
    });
    this.#redis.defineCommand('leaseAcquire', { numberOfKeys: 2, lua: ACQUIRE });
    this.#redis.defineCommand('leaseRenew', { numberOfKeys: 1, lua: RENEW });
    this.#redis.defineCommand('leaseRelease', { numberOfKeys: 1, lua: RELEASE });
    this.#redis.defineCommand('leaseAnnounce', { numberOfKeys: 1, lua: ANNOUNCE });
    this.#prefix = `woodytoys:lease:${resource}`;
  }

  /** Resolves once connected (commands fail fast before that). */
  async ready(): Promise<void> {
    if (this.#redis.status === 'ready') return;
    await new Promise<void>((resolve, reject) => {
      this.#redis.once('ready', resolve);
      this.#redis.once('end', () => reject(new Error('redis connection ended')));
    });
  }

  #key = (partition: number) => `${this.#prefix}:${partition}`;

  async acquire(partition: number, _owner: string, ttlMs: number): Promise<Grant | undefined> {
    const token = newToken();
    const epoch = await this.#redis.leaseAcquire(this.#key(partition), `${this.#key(partition)}:epoch`, token, Math.round(ttlMs));
    return epoch > 0 ? { partition, token, epoch } : undefined;
  }

  async renew(grant: Grant, ttlMs: number): Promise<boolean> {
    return (await this.#redis.leaseRenew(this.#key(grant.partition), grant.token, Math.round(ttlMs))) === 1;
  }

  async release(grant: Grant): Promise<boolean> {
    return (await this.#redis.leaseRelease(this.#key(grant.partition), grant.token)) === 1;
  }

  async announce(owner: string, ttlMs: number): Promise<number> {
    return this.#redis.leaseAnnounce(`${this.#prefix}:members`, owner, Math.round(ttlMs));
  }

  async withdraw(owner: string): Promise<void> {
    await this.#redis.zrem(`${this.#prefix}:members`, owner);
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
  }
}
