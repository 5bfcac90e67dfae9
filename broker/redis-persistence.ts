// Aedes session state shared by several broker nodes (BROKER_STORE=redis): aedes-persistence-redis
// keeps subscriptions, messages queued for persistent sessions, QoS 2 state, wills and retained
// messages in Redis, so a client may reconnect to any node and resume its session. This adds what
// the broker needs beyond Aedes's interface (SessionPersistence, persistence.ts).
import AsyncRedisPersistence from 'aedes-persistence-redis/asyncPersistence.js';
import { Redis } from 'ioredis';
import { Readable } from 'node:stream';
import type { SessionPersistence } from './persistence.js';

/** How long a SUBSCRIBE's store may wait for its own broadcast through Redis before it is logged. */
export const SLOW_SUBSCRIBE_MS = 5000;
/** How long it may wait in all (BROKER_REDIS_SUBSCRIBE_TIMEOUT_MS): then the client's connection is closed. */
export const SUBSCRIBE_TIMEOUT_MS = 30_000;

export interface SubscriptionWaits {
  /** A SUBSCRIBE's store, or an UNSUBSCRIBE's removal, still waits for its broadcast after SLOW_SUBSCRIBE_MS (told once per client while it lasts). */
  onSlow?: (clientId: string, waitedMs: number) => void;
  /** Such a wait passed `timeoutMs`: it failed, and Aedes closes the client's connection. */
  onTimeout?: (clientId: string, waitedMs: number) => void;
  timeoutMs?: number;
}

/** A change of subscriptions that waited longer than SubscriptionWaits.timeoutMs for its broadcast. */
export class SubscriptionTimeout extends Error {
  constructor(waitedMs: number) {
    super(`the change of subscriptions waited ${waitedMs} ms for its broadcast through Redis; connect again to subscribe again`);
    this.name = 'SubscriptionTimeout';
  }
}

/** aedes-persistence-redis's list of a session's queued packet keys, oldest first (its own naming). */
const outgoingKey = (clientId: string) => `outgoing:${encodeURIComponent(clientId)}`;

/**
 * Lua: a session's queue entry taken out, with the packet it names when no other session waits for
 * it. The package keeps a packet once (packet:<broker>:<counter>) with a count of the sessions whose
 * queue holds it (…:offlineCount); a QoS 2 delivery under way is the session's own copy
 * (outgoing:<client>:<broker>:<counter>), named by the same broker id and counter.
 */
const FORGET = `
local function forget(entry)
  local packet = entry
  if string.sub(entry, 1, 7) ~= 'packet:' then
    -- The package leaves such an entry in the list after PUBCOMP, its count already taken off.
    if redis.call('DEL', entry) == 0 then return end
    local broker, counter = string.match(entry, ':([^:]+):([^:]+)$')
    packet = 'packet:' .. (broker or '') .. ':' .. (counter or '')
  end
  local count = packet .. ':offlineCount'
  if redis.call('EXISTS', count) == 1 and redis.call('DECR', count) <= 0 then redis.call('DEL', packet, count) end
end
`;

/** Lua, KEYS[1] a session's queue: drops it, and each packet it held that no other session waits for. */
const DROP_QUEUE = `${FORGET}
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do forget(entry) end
return redis.call('DEL', KEYS[1])`;

/**
 * Lua, KEYS bounded sessions' queues and ARGV their bounds: takes the newest messages of each past
 * its bound out of it (not a QoS 2 delivery under way, which the package moves to the end) and
 * returns how many, per queue. Run after each publish is queued, so the bound holds however many
 * publishes, on however many nodes, were queued at once: the check and the trim are one step.
 */
const TRIM_QUEUES = `${FORGET}
local out = {}
for i, queue in ipairs(KEYS) do
  local over = redis.call('LLEN', queue) - tonumber(ARGV[i])
  local n = 0
  local at = -1
  while over > 0 do
    local entry = redis.call('LINDEX', queue, at)
    if not entry then break end
    if string.sub(entry, 1, 7) == 'packet:' then
      redis.call('LREM', queue, -1, entry)
      forget(entry)
      n = n + 1
      over = over - 1
    else
      at = at - 1
    end
  end
  out[i] = n
end
return out`;

type Scripted = Redis & { dropQueue(queue: string): Promise<number>; trimQueues(...args: Array<string | number>): Promise<number[]> };

export class RedisPersistence extends AsyncRedisPersistence implements SessionPersistence {
  claimAck: ((clientId: string, messageId: number | undefined) => boolean) | undefined;
  mayQueue: ((clientId: string, topic: string) => boolean) | undefined;
  /** As SqlitePersistence.queueLimit: the most messages a session keeps, its client away or connected. */
  queueLimit: ((clientId: string) => number) | undefined;
  /** Told of each message a session's bound kept out of its queue. */
  onQueueFull: ((clientId: string, topic: string | undefined) => void) | undefined;
  /** The store of each SUBSCRIBE packet's list under way (see addSubscriptions). */
  readonly #adding = new WeakMap<object, Promise<void>>();

  readonly #conn: Scripted;

  readonly #waits: SubscriptionWaits;
  /** Clients whose slow wait onSlow was told of, until that wait ends. */
  readonly #slowTold = new Set<string>();

  constructor(url: string, onError: (err: Error) => void, waits: SubscriptionWaits = {}) {
    const conn = new Redis(url);
    conn.on('error', onError);
    // The whole queue of a resuming session, as the SQLite store sends it: the package reads the
    // keys with LRANGE 0 maxSessionDelivery (default 1000, so 1,001 entries), and Aedes reads the
    // queue only on CONNECT (handlers/connect.js, emptyQueue): the rest waited for watchQueues to
    // close the connection, 1,001 messages per connection. -1 makes it LRANGE 0 -1, every key in one
    // atomic read before the first message goes out (the packets are then read one by one).
    super({ conn, maxSessionDelivery: -1 });
    conn.defineCommand('dropQueue', { numberOfKeys: 1, lua: DROP_QUEUE });
    // Its number of keys comes first in each call: one queue per bounded session.
    conn.defineCommand('trimQueues', { lua: TRIM_QUEUES });
    this.#conn = conn as Scripted;
    this.#waits = waits;
  }

  /**
   * A message queued for a connected persistent session reaches it live through Redis pub/sub,
   * which keeps nothing: when that fan-out misses (Redis away, a node's subscriptions not yet
   * renewed), the message waits in the session's queue until the client reconnects. Every
   * `everyMs` the oldest entry of each persistent session connected here is looked at; one that
   * was already the oldest at the previous look is stuck, and `stuck` is called with its client
   * (main.ts closes the connection: the client resumes its session and gets what is queued). A
   * client that holds one message unacknowledged that long gets it again: QoS 1 allows it.
   */
  watchQueues<C extends { id: string; clean: boolean; closed: boolean }>(clients: () => C[], everyMs: number, stuck: (client: C) => void): () => void {
    let before = new WeakMap<C, string>();
    let looking = false;
    const timer = setInterval(() => {
      if (looking) return;
      looking = true;
      const now = new WeakMap<C, string>();
      const sessions = clients().filter((c) => !c.clean && !c.closed);
      Promise.all(
        sessions.map(async (c) => {
          // aedes-persistence-redis's queue of a session: a list of packet keys, oldest first.
          const oldest = await this.#conn.lindex(outgoingKey(c.id), 0);
          if (oldest === null) return;
          if (before.get(c) === oldest) stuck(c);
          else now.set(c, oldest);
        }),
      )
        .catch(() => undefined) // Redis away: the next look tries again
        .finally(() => {
          before = now;
          looking = false;
        });
    }, everyMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Which sessions a topic reaches is known only asynchronously here: durable ingest keeps every QoS 1 publish. */
  hasSessionSubscriber(): boolean {
    return true;
  }

  /** Members of shared subscriptions live in the group store (redis-group-store.ts), not here. */
  subscriptionsWithPrefix(): Array<{ clientId: string; topic: string; qos: number }> {
    return [];
  }

  /** Not known without a scan of Redis. */
  get outgoingDepth(): number | undefined {
    return undefined;
  }

  /**
   * Only for the sessions whose user may read the topic (SessionPersistence.mayQueue), and within
   * the ACL's "#@ queue" bound: the package queues the message, then one Lua call takes what is past
   * the bound out of the bounded sessions' queues again, the newest first (so the oldest are kept,
   * as on one node), and counts each message taken out as not kept.
   */
  override async outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: { topic?: string }): Promise<void> {
    const { mayQueue } = this;
    const topic = packet.topic;
    const allowed = mayQueue && topic !== undefined ? subs.filter((sub) => mayQueue(sub.clientId, topic)) : subs;
    if (allowed.length === 0) return;
    await super.outgoingEnqueueCombi(allowed, packet);
    const bounded = allowed.map(({ clientId }) => ({ clientId, limit: this.#limitOf(clientId) })).filter(({ limit }) => limit !== Infinity);
    if (bounded.length === 0) return;
    const taken = await this.#conn.trimQueues(bounded.length, ...bounded.map(({ clientId }) => outgoingKey(clientId)), ...bounded.map(({ limit }) => limit));
    bounded.forEach(({ clientId }, i) => {
      for (let n = 0; n < (taken[i] ?? 0); n++) this.onQueueFull?.(clientId, topic);
    });
  }

  /**
   * A message delivered to a bounded session that did not keep it (its queue was full) is not
   * recorded: the package would count its acknowledgement off the packet's count of sessions
   * waiting for it, which never counted this one, and drop it from a session that still waits.
   */
  override async outgoingUpdate(client: { id: string }, packet: { cmd?: string; brokerId?: string; brokerCounter?: number }): Promise<void> {
    if (this.#limitOf(client.id) === Infinity) return super.outgoingUpdate(client, packet);
    if (packet.cmd === 'publish' && packet.brokerId !== undefined) {
      const listed = await this.#conn.lpos(outgoingKey(client.id), `packet:${packet.brokerId}:${packet.brokerCounter}`);
      if (listed === null) return;
    }
    // A QoS 2 delivery not kept has nothing recorded for its PUBREL either (the package's "unknown
    // key", whose error would close the connection): it goes on unrecorded.
    return super.outgoingUpdate(client, packet).catch((err: Error) => {
      if (packet.cmd !== 'pubrel' || err.message !== 'unknown key') throw err;
    });
  }

  #limitOf(clientId: string): number {
    return this.queueLimit?.(clientId) ?? Infinity;
  }

  /** The client ids of the sessions with subscriptions in the store (the package's own set). */
  sessionClientIds(): Promise<string[]> {
    return this.#conn.smembers('clients');
  }

  /**
   * Ends `clientId`'s stored session, as a clean start would: its queue (each queued packet's count
   * of sessions waiting for it, as the package keeps it) and its subscriptions, on every node.
   */
  async endSession(clientId: string): Promise<void> {
    await this.#conn.dropQueue(outgoingKey(clientId));
    // The package waits for its own broadcast of the removal to come back through Redis, without a
    // bound (as for a SUBSCRIBE, addSubscriptions): the SUBACK that made room waits at most this.
    const removed = this.cleanSubscriptions({ id: clientId });
    if ((await Promise.race([removed, this.#slow(clientId, removed)])) === 'slow') removed.catch(() => undefined);
  }

  /**
   * Aedes 1.2 calls this once per filter of a SUBSCRIBE, each time with the packet's whole list
   * (handlers/subscribe.js, storeSubscriptions), and the package waits for its own broadcast keyed
   * by the list's first filter: concurrent calls for one packet overwrite each other's wait, and one
   * never ends, nor does the SUBACK. One store per packet: the list is the same object every time.
   */
  override addSubscriptions(client: { id: string }, subs: object[]): Promise<void> {
    let adding = this.#adding.get(subs);
    if (!adding) {
      adding = this.#bounded(client.id, super.addSubscriptions(client, subs));
      this.#adding.set(subs, adding);
    }
    return adding;
  }

  /** The same wait for an UNSUBSCRIBE's removal (its UNSUBACK waits with it). */
  override removeSubscriptions(client: { id: string }, topics: string[]): Promise<void> {
    return this.#bounded(client.id, super.removeSubscriptions(client, topics));
  }

  /**
   * The package waits for its own broadcast without a bound, and the SUBACK or UNSUBACK with it.
   * Said after SLOW_SUBSCRIBE_MS; after `timeoutMs` the change fails with SubscriptionTimeout,
   * and Aedes closes the connection (handlers/subscribe.js and unsubscribe.js pass the error on):
   * the client connects again and subscribes again, which broadcasts anew (the change itself was
   * stored before the wait, so nothing of it is undone).
   */
  #bounded(clientId: string, work: Promise<void>): Promise<void> {
    void this.#slow(clientId, work);
    const timeoutMs = this.#waits.timeoutMs ?? SUBSCRIBE_TIMEOUT_MS;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        work.catch(() => undefined);
        this.#waits.onTimeout?.(clientId, timeoutMs);
        reject(new SubscriptionTimeout(timeoutMs));
      }, timeoutMs);
      timer.unref();
      work.then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  /**
   * Resolves (and tells onSlowSubscribe) once `work`, a change of `clientId`'s subscriptions that
   * waits for its own broadcast through Redis, has taken SLOW_SUBSCRIBE_MS; never if it ends before.
   */
  #slow(clientId: string, work: Promise<unknown>): Promise<'slow'> {
    return new Promise((resolve) => {
      let told = false;
      const timer = setTimeout(() => {
        // Once per client while a wait it was told of lasts: a SUBSCRIBE's refused filters are each
        // removed (authorization.ts), and a session's end removes them through the package too.
        if (!this.#slowTold.has(clientId)) {
          this.#slowTold.add(clientId);
          told = true;
          this.#waits.onSlow?.(clientId, SLOW_SUBSCRIBE_MS);
        }
        resolve('slow');
      }, SLOW_SUBSCRIBE_MS);
      timer.unref();
      const settled = () => {
        clearTimeout(timer);
        if (told) this.#slowTold.delete(clientId);
      };
      work.then(settled, settled);
    });
  }

  // Aedes 1.2 pipes these (subscribe.js: stream.pipe); the package returns async generators.
  override createRetainedStreamCombi(patterns: string[]): Readable {
    return Readable.from(super.createRetainedStreamCombi(patterns));
  }

  override createRetainedStream(pattern: string): Readable {
    return Readable.from(super.createRetainedStream(pattern));
  }

  override outgoingStream(client: { id: string }): Readable {
    return Readable.from(super.outgoingStream(client));
  }

  override streamWill(brokers?: Record<string, unknown>): Readable {
    return Readable.from(super.streamWill(brokers));
  }

  override outgoingClearMessageId(client: { id: string }, packet: { messageId?: number | undefined }): Promise<unknown> {
    if (this.claimAck?.(client.id, packet.messageId)) return Promise.resolve(undefined);
    return super.outgoingClearMessageId(client, packet);
  }
}
