// How many persistent sessions a user's clients keep: its ACL's "#@ sessions <n>" rule. Without
// one, no bound (the services' sessions carry their workflows). The public viewer login is the one
// it is for: anyone may use it, and each persistent session it opens costs the broker memory and a
// place in every publish's fan-out, however small its queue ("#@ queue"). So a stranger looping
// over client ids could otherwise grow both without end.
//
// A session is counted from its first subscription (a persistent client that never subscribes
// keeps nothing) until it is ended. When one more would pass the bound, the session whose client
// has been away the longest is ended first: its subscriptions, queued messages and QoS 2 state are
// dropped, as MQTT's clean start would, and its client finds no session when it comes back
// (CONNACK session present 0), so it subscribes again. Only when every counted session's client is
// connected is the subscription refused (SUBACK 0x80): a stranger then holds that many connections,
// which the per-address limits bound. A displaced legitimate display loses what waited for it, not
// its access.
//
// A client that is connecting counts as connected: Aedes restores its stored subscriptions before
// it registers the client, and a session ended in between would be announced as present (CONNACK)
// with nothing behind it. A session is away once its client's last connection has closed.
// Sessions in the store at start count as away in the order they went away (kept in the store,
// session_away), those without a time after them. This is the SQLite store's (one node); on Redis
// (several nodes) the same rule is counted in Redis: cluster-bounds.ts.

export interface SessionCapOptions {
  /** The user the ACL gives `clientId` to and that user's "#@ sessions" bound; undefined: no bound. */
  limitOf(clientId: string): { user: string; limit: number } | undefined;
  /** Does the store hold anything of `clientId`'s session (subscriptions, queued messages, QoS 2 state)? */
  holds(clientId: string): boolean;
  /** Has `clientId` a connection to this broker, connected or still connecting (aedes-adapter.ts Presence)? */
  isConnected(clientId: string): boolean;
  /** Ends `clientId`'s stored session (subscriptions, queue, QoS 2 state). */
  end(clientId: string): void;
  /** Told of each session ended to make room, with how many `user` keeps. */
  onEnded?(user: string, clientId: string, limit: number): void;
  /** Told when a counted session takes the last place in the order (counted, or its client went away), and when one is no longer counted. */
  onOrdered?(clientId: string): void;
  onForgotten?(clientId: string): void;
}

export class SessionCap {
  /** user → its counted sessions' client ids, in the order their clients went away (or were admitted) */
  readonly #sessions = new Map<string, Set<string>>();

  constructor(private readonly opts: SessionCapOptions) {}

  /** Counts the sessions found in the store at start, in its order, as away since then. */
  seed(clientIds: Iterable<string>): void {
    for (const clientId of clientIds) {
      const bound = this.opts.limitOf(clientId);
      if (bound) this.#of(bound.user).add(clientId);
    }
  }

  /**
   * A persistent client subscribes: room for its session, or why there is none. Ends the sessions
   * away the longest while its user's are at the bound.
   */
  admit(clientId: string): string | undefined {
    const bound = this.opts.limitOf(clientId);
    if (!bound) return undefined;
    const sessions = this.#of(bound.user);
    if (sessions.has(clientId)) return undefined;
    // What the store no longer holds (a clean start took it, or every filter was unsubscribed) and
    // no connected client uses is no session: forgotten, not counted.
    if (sessions.size >= bound.limit) {
      for (const id of sessions) {
        if (this.opts.holds(id) || this.opts.isConnected(id)) continue;
        sessions.delete(id);
        this.opts.onForgotten?.(id);
      }
    }
    while (sessions.size >= bound.limit) {
      const oldest = this.#awayLongest(sessions);
      if (oldest === undefined) return `user ${bound.user} keeps ${bound.limit} persistent sessions, every one connected ("#@ sessions" in the ACL)`;
      sessions.delete(oldest);
      this.opts.end(oldest);
      this.opts.onEnded?.(bound.user, oldest, bound.limit);
    }
    sessions.add(clientId);
    this.opts.onOrdered?.(clientId);
    return undefined;
  }

  /** A client went away: its session (if counted) is now the newest away. */
  away(clientId: string): void {
    const bound = this.opts.limitOf(clientId);
    const sessions = bound && this.#sessions.get(bound.user);
    if (!sessions?.delete(clientId)) return;
    sessions.add(clientId);
    this.opts.onOrdered?.(clientId);
  }

  /** Sessions kept now per user, for metrics: those counted that the store holds or a client uses. */
  counts(): Map<string, number> {
    const kept = (sessions: Set<string>) => [...sessions].filter((id) => this.opts.holds(id) || this.opts.isConnected(id)).length;
    return new Map([...this.#sessions].map(([user, sessions]) => [user, kept(sessions)]));
  }

  /** The counted session whose client went away first (the set keeps them in that order). */
  #awayLongest(sessions: Set<string>): string | undefined {
    for (const id of sessions) if (!this.opts.isConnected(id)) return id;
    return undefined;
  }

  #of(user: string): Set<string> {
    let sessions = this.#sessions.get(user);
    if (!sessions) this.#sessions.set(user, (sessions = new Set()));
    return sessions;
  }
}
