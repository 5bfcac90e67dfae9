// Who may connect, with which client id, and what each client may publish, subscribe to, join and
// receive: passwords from a Mosquitto password file, rules from a Mosquitto ACL file
// (broker/mosquitto/acl, with our `#@ clientid` and `#@ group` rules). Anonymous clients are refused
// unless allowed, and when allowed (development, tests) they are trusted fully.
import type { Client } from 'aedes';
import type { Logger } from '../lib/log.js';
import type { Acl } from './acl.js';
import { verifyPassword } from './password-hash.js';

export interface AccessOptions {
  /** user → encoded password (password-hash.ts) */
  passwords: Map<string, string>;
  acl: Acl;
  allowAnonymous: boolean;
  log: Logger;
}

/** What a CONNECT asks for, as far as access is concerned. */
export interface ConnectRequest {
  clientId: string;
  username?: string | undefined;
  password?: Buffer | undefined;
  will?: { topic: string } | null | undefined;
  /** for the log line: the peer, and the client behind it when the gateway says (X-Real-IP) */
  address?: string | undefined;
  forwardedFor?: string | undefined;
}

/**
 * The decision on a CONNECT. Refusals carry CONNACK return code 5 ("not authorized"), which
 * Mosquitto answers to a wrong user or password too: a stranger learns nothing about which it was.
 */
export type Admission = { ok: true; user: string | undefined } | { ok: false; returnCode: 5; reason: string };

export class Access {
  /** The user each admitted client logged in as, null for an anonymous one; a client not here was never admitted. */
  readonly #users = new WeakMap<Client, string | null>();
  readonly #readable = new Map<string, boolean>();
  readonly #writable = new Map<string, boolean>();
  /** client id → the user the ACL gives it to (null: nobody), for sessions whose client is offline */
  readonly #owners = new Map<string, string | null>();

  constructor(private readonly opts: AccessOptions) {}

  /**
   * Decides on a CONNECT, and logs a refusal. Nothing here touches a session: the broker gives the
   * connection its client id only after this said yes, so a refused CONNECT never disturbs the
   * session that holds the id.
   */
  admit({ clientId, username, password, will, address, forwardedFor }: ConnectRequest): Admission {
    const refuse = (reason: string): Admission => {
      this.opts.log.warn({ clientId, username, address, forwardedFor, reason }, 'connection refused');
      return { ok: false, returnCode: 5, reason };
    };
    if (username === undefined || username === '') {
      return this.opts.allowAnonymous ? { ok: true, user: undefined } : refuse('anonymous clients are not allowed');
    }
    const encoded = this.opts.passwords.get(username);
    if (!encoded || !password || !verifyPassword(password.toString('utf8'), encoded)) return refuse('unknown user or wrong password');
    // An empty id (allowed with a clean session only) gets a random one from the broker, nobody's.
    const foreign = clientId === '' ? undefined : this.opts.acl.clientIdRefusal(username, clientId);
    if (foreign) return refuse(foreign);
    // A will is checked now, while we know who set it: it may be published after a restart, without a client.
    if (will && this.#writeRefusal({ username, clientId }, will.topic)) return refuse(`will topic ${will.topic} not allowed by the ACL`);
    return { ok: true, user: username };
  }

  /** Remembers who an admitted client is, for every later decision on it. */
  bind(client: Client, user: string | undefined): void {
    this.#users.set(client, user ?? null);
  }

  /**
   * Is `client` logged in as a user with a bound in the ACL ("#@ queue", "#@ sessions" or
   * "#@ filters": the public login's kind, whoever holds it), whose slowness must cost nobody else?
   */
  bounded(client: Client): boolean {
    const username = this.#users.get(client);
    if (!username) return false;
    const { acl } = this.opts;
    return acl.queueLimit(username) !== undefined || acl.sessionLimit(username) !== undefined || acl.filterLimit(username) !== undefined;
  }

  /** Was this client admitted (and bound)? Anything else is refused everything. */
  admitted(client: Client): boolean {
    return this.#users.has(client);
  }

  /** Why `client` may not publish on `topic`, or undefined when it may. */
  publishRefusal(client: Client | null, topic: string): string | undefined {
    if (topic.startsWith('$')) return 'topics starting with $ are reserved';
    if (!client || this.#anonymous(client)) return undefined;
    return this.#writeRefusal(this.#who(client), topic);
  }

  /**
   * Why `client` may not subscribe to `filter`, or undefined when it may. A shared subscription
   * (`group` given) needs a group rule for that group covering the filter, and read rules covering
   * all of it (the broker cannot skip a member per message).
   */
  subscribeRefusal(client: Client, filter: string, group?: string): string | undefined {
    if (this.#anonymous(client)) return undefined;
    const who = this.#who(client);
    if (group !== undefined) {
      const missing = this.opts.acl.groupRefusal(who, group, filter);
      if (missing) return missing;
    }
    return this.opts.acl.canSubscribe(who, filter, group !== undefined) ? undefined : 'not allowed by the ACL';
  }

  /** authorizeForward: a subscription may be wider than what its client may read; check each message. */
  forward = <P extends { topic: string }>(client: Client, packet: P): P | null => {
    if (this.#anonymous(client)) return packet;
    return this.#decide(this.#readable, this.#who(client), packet.topic, (who) => this.opts.acl.canRead(who, packet.topic)) ? packet : null;
  };

  /**
   * May a message on `topic` wait in the stored session of `clientId` while it is offline? Only if
   * its user may read it: the ACL gives every client id one user (its "#@ clientid" rules). When
   * anonymous clients are allowed (development, tests), any client id may be one of theirs, trusted fully.
   */
  mayQueue = (clientId: string, topic: string): boolean => {
    if (this.opts.allowAnonymous) return true;
    const username = this.#owner(clientId);
    // No user may connect with a client id the ACL gives to nobody: such a session holds nothing.
    return username !== null && this.#decide(this.#readable, { username, clientId }, topic, (who) => this.opts.acl.canRead(who, topic));
  };

  /**
   * The most messages the stored session of `clientId` keeps (unacknowledged or waiting): its user's
   * "#@ queue" rule, unbounded without one (the services' sessions carry their workflows: nothing
   * is dropped there) and when anonymous clients are allowed.
   */
  queueLimit = (clientId: string): number => {
    if (this.opts.allowAnonymous) return Infinity;
    const username = this.#owner(clientId);
    return username === null ? 0 : (this.opts.acl.queueLimit(username) ?? Infinity);
  };

  /**
   * The user the ACL gives `clientId` to and its "#@ sessions" bound, undefined when none (the
   * services) and when anonymous clients are allowed.
   */
  sessionLimit = (clientId: string): { user: string; limit: number } | undefined => {
    if (this.opts.allowAnonymous) return undefined;
    const username = this.#owner(clientId);
    const limit = username === null ? undefined : this.opts.acl.sessionLimit(username);
    return limit === undefined ? undefined : { user: username!, limit };
  };

  /**
   * Why `client` may not hold one more topic filter than the `held` it has: its login's "#@ filters"
   * bound (by the user it logged in as: a clean session's client id may be the broker's random one).
   */
  filterRefusal(client: Client, held: number): string | undefined {
    const username = this.#users.get(client);
    const limit = username ? this.opts.acl.filterLimit(username) : undefined;
    if (limit === undefined || held < limit) return undefined;
    return `user ${username}'s clients hold at most ${limit} topic filters each ("#@ filters" in the ACL)`;
  }

  /** The user the ACL gives `clientId` to (its "#@ clientid" rules), null for none; remembered. */
  #owner(clientId: string): string | null {
    let username = this.#owners.get(clientId);
    if (username === undefined) {
      username = this.opts.acl.clientIdOwner(clientId) ?? null;
      if (this.#owners.size > 50_000) this.#owners.clear();
      this.#owners.set(clientId, username);
    }
    return username;
  }

  #writeRefusal(who: { username: string | undefined; clientId: string }, topic: string): string | undefined {
    return this.#decide(this.#writable, who, topic, (w) => this.opts.acl.canPublish(w, topic)) ? undefined : 'not allowed by the ACL';
  }

  /**
   * ACL answers per user, client and topic, remembered: topics repeat and rules do not change. The
   * key gives the lengths of the user name and client id, which may hold any character: joined by a
   * separator, `worker-a` + `x\ny` and `worker-a\nx` + `y` were one key, and a client could reuse
   * an answer given for another's topic.
   */
  #decide(cache: Map<string, boolean>, who: { username: string | undefined; clientId: string }, topic: string, ask: (who: { username: string | undefined; clientId: string }) => boolean) {
    const key = `${who.username === undefined ? -1 : who.username.length}:${who.username ?? ''}${who.clientId.length}:${who.clientId}${topic}`;
    let ok = cache.get(key);
    if (ok === undefined) {
      ok = ask(who);
      if (cache.size > 50_000) cache.clear();
      cache.set(key, ok);
    }
    return ok;
  }

  #anonymous(client: Client) {
    return this.#users.get(client) === null;
  }

  #who(client: Client) {
    return { username: this.#users.get(client) ?? undefined, clientId: client.id };
  }
}
