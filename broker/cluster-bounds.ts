// The ACL's "#@ sessions" bound across broker nodes (BROKER_STORE=redis; the "#@ queue" bound is
// the store's own, redis-persistence.ts). It asks what one node answers from its own memory
// (aedes-adapter.ts Presence): is this client connected, here or on any other node? Only the
// sessions of away clients are ended to make room.
//
// Presence: each node keeps in Redis the set of its connected clients whose user has a sessions
// bound (services have none and cost nothing here), emptied when the node starts. A node's set counts only
// while the node holds its id (node-lease.ts): a node killed with -9 stops counting once its lease
// runs out, and its clients' sessions are away from then on.
//
// Sessions: a sorted set per bounded user, client ids scored by the time they went away (or were
// first counted). Admission is one Lua script, so two nodes admitting at once never pass the bound
// together: one more session ends the oldest away (the caller then drops its subscriptions and
// queue, RedisPersistence.endSession); with every counted session connected, it is refused.
//
// What one node does exactly and this does not: between the script naming a session to end and its
// subscriptions being dropped (one round trip to Redis), that session's client may connect and be
// told its session is present. And a session whose client unsubscribed from everything stays
// counted until it is ended in its turn (on one node such a session is forgotten).
import { Redis } from 'ioredis';
import { nodeLeaseKey } from './node-lease.js';

const PREFIX = 'woodytoys:broker:';
const NODES = `${PREFIX}presence-nodes`;
const presenceKey = (nodeId: string) => `${PREFIX}presence:${nodeId}`;
const sessionsKey = (user: string) => `${PREFIX}sessions:${user}`;
const LEASE_PREFIX = nodeLeaseKey('');
const PRESENCE_PREFIX = presenceKey('');

/** Lua: the presence sets of the nodes that hold their id, and whether an id is in one of them. */
const PRESENT = `
local function liveSets()
  local sets = {}
  for _, node in ipairs(redis.call('SMEMBERS', '${NODES}')) do
    if redis.call('EXISTS', '${LEASE_PREFIX}' .. node) == 1 then sets[#sets + 1] = '${PRESENCE_PREFIX}' .. node end
  end
  return sets
end
local function present(sets, id)
  for _, set in ipairs(sets) do
    if redis.call('SISMEMBER', set, id) == 1 then return true end
  end
  return false
end
`;

// KEYS[1]: the user's sessions. ARGV: client id, bound, now (ms). Returns {'ok' or 'full', ended ids…}.
const ADMIT = `${PRESENT}
local id, limit = ARGV[1], tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[1], id) then return {'ok'} end
local out = {'ok'}
local sets = nil
while redis.call('ZCARD', KEYS[1]) >= limit do
  sets = sets or liveSets()
  local oldest = nil
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if not present(sets, member) then oldest = member break end
  end
  if not oldest then
    out[1] = 'full'
    return out
  end
  redis.call('ZREM', KEYS[1], oldest)
  out[#out + 1] = oldest
end
redis.call('ZADD', KEYS[1], ARGV[3], id)
return out`;

type Scripted = Redis & {
  sessionAdmit(key: string, clientId: string, limit: number, now: number): Promise<string[]>;
};

export interface ClusterBoundsOptions {
  url: string;
  nodeId: string;
  /** The user the ACL gives `clientId` to and its "#@ sessions" bound; undefined: none. */
  sessionLimitOf(clientId: string): { user: string; limit: number } | undefined;
  /** Has `clientId` a connection to this node now (aedes-adapter.ts Presence)? */
  isHere(clientId: string): boolean;
  onError(err: Error): void;
}

export class ClusterBounds {
  readonly #redis: Scripted;
  readonly #opts: ClusterBoundsOptions;
  readonly #presence: string;
  /** Bounded ids connected to this node whose session is counted. */
  readonly #admitted = new Set<string>();

  constructor(opts: ClusterBoundsOptions) {
    this.#opts = opts;
    this.#presence = presenceKey(opts.nodeId);
    // Fail fast while Redis is away: a CONNECT or SUBSCRIBE is refused then, and a metrics scrape
    // does without the count, rather than each waiting for ioredis's retries.
    this.#redis = new Redis(opts.url, { enableOfflineQueue: false, commandTimeout: 2000, maxRetriesPerRequest: 1 }) as Scripted;
    this.#redis.on('error', opts.onError);
    this.#redis.defineCommand('sessionAdmit', { numberOfKeys: 1, lua: ADMIT });
  }

  /** Before the node takes clients: its presence set from a previous run is stale. */
  async start(): Promise<void> {
    if (this.#redis.status !== 'ready') await new Promise((resolve) => this.#redis.once('ready', resolve));
    await this.#redis.multi().del(this.#presence).sadd(NODES, this.#opts.nodeId).exec();
  }

  /** A node that is gone for good (its inbox adopted, node-lease.ts): its presence set is stale. */
  async forgetNode(nodeId: string): Promise<void> {
    await this.#redis.multi().del(presenceKey(nodeId)).srem(NODES, nodeId).exec();
  }

  /** Has `clientId`'s user a sessions bound (so its presence counts cluster-wide)? */
  bounded(clientId: string): boolean {
    return this.#opts.sessionLimitOf(clientId) !== undefined;
  }

  /** A bounded client's connection to this node: present cluster-wide once this resolves. */
  async arrive(clientId: string, clean: boolean): Promise<void> {
    if (clean) this.#admitted.delete(clientId);
    await this.#redis.sadd(this.#presence, clientId);
  }

  /**
   * A clean start has dropped the client's stored session (told once Aedes has registered the
   * client, main.ts): it no longer counts. Not before: a clean CONNECT refused or cut off after its
   * login drops nothing, and un-counting it then let a stranger keep sessions nobody counted.
   */
  cleanStart(clientId: string): void {
    const bound = this.#opts.sessionLimitOf(clientId);
    if (bound) this.#redis.zrem(sessionsKey(bound.user), clientId).catch((err: Error) => this.#opts.onError(err));
  }

  /** Its last connection to this node closed: away from now on (unless connected elsewhere). */
  gone(clientId: string): void {
    this.#admitted.delete(clientId);
    const m = this.#redis.multi().srem(this.#presence, clientId);
    const bound = this.#opts.sessionLimitOf(clientId);
    if (bound) m.zadd(sessionsKey(bound.user), 'XX', Date.now(), clientId);
    m.exec().catch((err: Error) => this.#opts.onError(err));
  }

  /**
   * A persistent client subscribes: room for its session (ending the sessions away the longest,
   * which `end` drops from the store), or why there is none. Undefined at once when no bound
   * applies or the session was counted during its client's connection here: a connected client's
   * session is never ended, so Redis is asked once per connection, not for each filter.
   */
  admit(clientId: string, end: (clientId: string, user: string, limit: number) => Promise<void>): Promise<string | undefined> | undefined {
    const bound = this.#opts.sessionLimitOf(clientId);
    if (!bound || this.#admitted.has(clientId)) return undefined;
    return this.#redis.sessionAdmit(sessionsKey(bound.user), clientId, bound.limit, Date.now()).then(async ([answer, ...ended]) => {
      // Each is no longer counted: every one is ended, whatever becomes of the others.
      const ends = await Promise.allSettled(ended.map((id) => end(id, bound.user, bound.limit)));
      for (const e of ends) if (e.status === 'rejected') this.#opts.onError(e.reason as Error);
      if (answer !== 'ok') return `user ${bound.user} keeps ${bound.limit} persistent sessions, every one connected ("#@ sessions" in the ACL)`;
      if (this.#opts.isHere(clientId)) this.#admitted.add(clientId);
      return undefined;
    });
  }

  /** Counts the sessions in the store (at start): those not counted yet, as away the longest. */
  async seed(clientIds: string[]): Promise<void> {
    const m = this.#redis.multi();
    for (const clientId of clientIds) {
      const bound = this.#opts.sessionLimitOf(clientId);
      if (bound) m.zadd(sessionsKey(bound.user), 'NX', 0, clientId);
    }
    await m.exec();
  }

  /** Sessions counted now per user with a bound (`users`), for metrics. */
  async counts(users: string[]): Promise<Map<string, number>> {
    const m = this.#redis.multi();
    for (const user of users) m.zcard(sessionsKey(user));
    // Redis away: no figure rather than a failed scrape.
    const results = (await m.exec().catch(() => null)) ?? [];
    return new Map(results.map((result, i) => [users[i]!, Number(result[1])]));
  }

  /** A node stopping: its clients are gone (its presence set goes with it), then the connection. */
  async close(): Promise<void> {
    await this.forgetNode(this.#opts.nodeId).catch(() => undefined);
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}
