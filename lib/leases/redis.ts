// The lease store across hosts: Redis. Acquire is SET NX PX with a random token (plus the fencing
// epoch, in the same script so the two cannot disagree); renew and release compare the token first,
// in Lua, so a process whose lease expired can never extend or free the next holder's. Expiry is
// Redis's own (PX), the member count uses Redis's clock (TIME).
import { Redis } from 'ioredis';
import { newToken, type Grant, type LeaseStore, type Member } from './store.js';

export const ACQUIRE = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0`;

export const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`;

export const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

// KEYS: members (sorted set by expiry, Redis's clock), wants (hash owner → partitions wanted).
const ANNOUNCE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #gone > 0 then
  redis.call('HDEL', KEYS[2], unpack(gone))
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local owners = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for i, owner in ipairs(owners) do
  out[#out + 1] = owner
  out[#out + 1] = redis.call('HGET', KEYS[2], owner) or '0'
end
return out`;

type Scripted = Redis & {
  leaseAcquire(key: string, epochKey: string, token: string, ttl: number): Promise<number>;
  leaseRenew(key: string, token: string, ttl: number): Promise<number>;
  leaseRelease(key: string, token: string): Promise<number>;
  leaseAnnounce(members: string, wants: string, owner: string, wanted: number, ttl: number): Promise<string[]>;
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
    this.#redis.defineCommand('leaseAnnounce', { numberOfKeys: 2, lua: ANNOUNCE });
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

  async announce(owner: string, wanted: number, ttlMs: number): Promise<Member[]> {
    const flat = await this.#redis.leaseAnnounce(`${this.#prefix}:members`, `${this.#prefix}:wants`, owner, wanted, Math.round(ttlMs));
    const members: Member[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) members.push({ owner: flat[i]!, wanted: Number(flat[i + 1]) });
    return members.sort((a, b) => (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : 0));
  }

  async withdraw(owner: string): Promise<void> {
    await this.#redis.multi().zrem(`${this.#prefix}:members`, owner).hdel(`${this.#prefix}:wants`, owner).exec();
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
  }
}
