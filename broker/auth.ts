// Who may connect, and what each client may publish, subscribe to and receive: passwords from a
// Mosquitto password file, rules from a Mosquitto ACL file (broker/mosquitto/acl). Anonymous
// clients are refused unless allowed, and when allowed (development, tests) they are trusted fully.
import type { Client } from 'aedes';
import type { Logger } from '../lib/log.js';
import type { Acl } from './acl.js';
import { verifyPassword } from './password.js';

export interface AccessOptions {
  /** user → encoded password (password.ts) */
  passwords: Map<string, string>;
  acl: Acl;
  allowAnonymous: boolean;
  log: Logger;
}

/** CONNACK return code 5: Mosquitto answers "not authorized" to a wrong user or password too. */
const notAuthorized = () => Object.assign(new Error('not authorized'), { returnCode: 5 as const });

export class Access {
  /** The user each authenticated client logged in as; absent for anonymous clients. */
  readonly #users = new WeakMap<Client, string>();
  readonly #readable = new Map<string, boolean>();
  readonly #writable = new Map<string, boolean>();

  constructor(private readonly opts: AccessOptions) {}

  authenticate = (client: Client, username: string | undefined, password: Buffer | undefined, done: (err: ReturnType<typeof notAuthorized> | null, ok: boolean | null) => void) => {
    if (username === undefined || username === '') {
      if (this.opts.allowAnonymous) return done(null, true);
      this.opts.log.warn({ clientId: client.id }, 'anonymous connection refused');
      return done(notAuthorized(), false);
    }
    const encoded = this.opts.passwords.get(username);
    if (!encoded || !password || !verifyPassword(password.toString('utf8'), encoded)) {
      this.opts.log.warn({ clientId: client.id, username }, 'connection refused: unknown user or wrong password');
      return done(notAuthorized(), false);
    }
    this.#users.set(client, username);
    // A will is checked now, while we know who set it: it may be published after a restart, without a client.
    const will = (client as unknown as { _will?: { topic: string } | null })._will;
    if (will && this.publishRefusal(client, will.topic)) {
      this.#users.delete(client);
      this.opts.log.warn({ clientId: client.id, username, topic: will.topic }, 'connection refused: will topic not allowed by the ACL');
      return done(notAuthorized(), false);
    }
    done(null, true);
  };

  /** Why `client` may not publish on `topic`, or undefined when it may. */
  publishRefusal(client: Client | null, topic: string): string | undefined {
    if (topic.startsWith('$')) return 'topics starting with $ are reserved';
    if (!client || this.#anonymous(client)) return undefined;
    return this.#decide(this.#writable, client, topic, (who) => this.opts.acl.canPublish(who, topic)) ? undefined : 'not allowed by the ACL';
  }

  /** Why `client` may not subscribe to `filter`, or undefined when it may. */
  subscribeRefusal(client: Client, filter: string, shared: boolean): string | undefined {
    if (this.#anonymous(client)) return undefined;
    return this.opts.acl.canSubscribe(this.#who(client), filter, shared) ? undefined : 'not allowed by the ACL';
  }

  /** authorizeForward: a subscription may be wider than what its client may read; check each message. */
  forward = <P extends { topic: string }>(client: Client, packet: P): P | null => {
    if (this.#anonymous(client)) return packet;
    return this.#decide(this.#readable, client, packet.topic, (who) => this.opts.acl.canRead(who, packet.topic)) ? packet : null;
  };

  /** ACL answers per user, client and topic, remembered: topics repeat and rules do not change. */
  #decide(cache: Map<string, boolean>, client: Client, topic: string, ask: (who: { username: string | undefined; clientId: string }) => boolean) {
    const key = `${this.#users.get(client)}\n${client.id}\n${topic}`;
    let ok = cache.get(key);
    if (ok === undefined) {
      ok = ask(this.#who(client));
      if (cache.size > 50_000) cache.clear();
      cache.set(key, ok);
    }
    return ok;
  }

  #anonymous(client: Client) {
    return !this.#users.has(client);
  }

  #who(client: Client) {
    return { username: this.#users.get(client), clientId: client.id };
  }
}
