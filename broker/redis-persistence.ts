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

/** aedes-persistence-redis's list of a session's queued packet keys, oldest first (its own naming). */
const outgoingKey = (clientId: string) => `outgoing:${encodeURIComponent(clientId)}`;

export class RedisPersistence extends AsyncRedisPersistence implements SessionPersistence {
  claimAck: ((clientId: string, messageId: number | undefined) => boolean) | undefined;
  mayQueue: ((clientId: string, topic: string) => boolean) | undefined;
  /** The store of each SUBSCRIBE packet's list under way (see addSubscriptions). */
  readonly #adding = new WeakMap<object, Promise<void>>();

  readonly #conn: Redis;

  readonly #onSlowSubscribe: ((clientId: string, waitedMs: number) => void) | undefined;

  /** `onSlowSubscribe`: a SUBSCRIBE's store still waits for its broadcast after SLOW_SUBSCRIBE_MS. */
  constructor(url: string, onError: (err: Error) => void, onSlowSubscribe?: (clientId: string, waitedMs: number) => void) {
    const conn = new Redis(url);
    conn.on('error', onError);
    // The whole queue of a resuming session, as the SQLite store sends it: the package reads the
    // keys with LRANGE 0 maxSessionDelivery (default 1000, so 1,001 entries), and Aedes reads the
    // queue only on CONNECT (handlers/connect.js, emptyQueue): the rest waited for watchQueues to
    // close the connection, 1,001 messages per connection. -1 makes it LRANGE 0 -1, every key in one
    // atomic read before the first message goes out (the packets are then read one by one).
    super({ conn, maxSessionDelivery: -1 });
    this.#conn = conn;
    this.#onSlowSubscribe = onSlowSubscribe;
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
   * Only for the sessions whose user may read the topic (SessionPersistence.mayQueue). The ACL's
   * queue bound is not enforced on this store (see SqlitePersistence.queueLimit).
   */
  override outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: { topic?: string }): Promise<void> {
    const { mayQueue } = this;
    const topic = packet.topic;
    const allowed = mayQueue && topic !== undefined ? subs.filter((sub) => mayQueue(sub.clientId, topic)) : subs;
    return allowed.length === 0 ? Promise.resolve() : super.outgoingEnqueueCombi(allowed, packet);
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
      adding = super.addSubscriptions(client, subs);
      this.#adding.set(subs, adding);
      // The package waits for the broadcast without a bound, and the SUBACK with it: said, not hidden.
      const slow = setTimeout(() => this.#onSlowSubscribe?.(client.id, SLOW_SUBSCRIBE_MS), SLOW_SUBSCRIBE_MS);
      slow.unref();
      adding.then(
        () => clearTimeout(slow),
        () => clearTimeout(slow),
      );
    }
    return adding;
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
