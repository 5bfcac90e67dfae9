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
    done(null, true);
  };

  /** Why `client` may not publish on `topic`, or undefined when it may. */
  publishRefusal(client: Client | null, topic: string): string | undefined {
    if (topic.startsWith('$')) return 'topics starting with $ are reserved';
    if (!client || this.#anonymous(client)) return undefined;
    return this.opts.acl.canPublish(this.#who(client), topic) ? undefined : 'not allowed by the ACL';
  }

  /** Why `client` may not subscribe to `filter`, or undefined when it may. */
  subscribeRefusal(client: Client, filter: string, shared: boolean): string | undefined {
    if (this.#anonymous(client)) return undefined;
    return this.opts.acl.canSubscribe(this.#who(client), filter, shared) ? undefined : 'not allowed by the ACL';
  }

  /** authorizeForward: a subscription may be wider than what its client may read; check each message. */
  forward = <P extends { topic: string }>(client: Client, packet: P): P | null => {
    if (this.#anonymous(client)) return packet;
    const user = this.#users.get(client)!;
    const key = `${user}\n${client.id}\n${packet.topic}`;
    let ok = this.#readable.get(key);
    if (ok === undefined) {
      ok = this.opts.acl.canRead(this.#who(client), packet.topic);
      if (this.#readable.size > 50_000) this.#readable.clear();
      this.#readable.set(key, ok);
    }
    return ok ? packet : null;
  };

  #anonymous(client: Client) {
    return !this.#users.has(client);
  }

  #who(client: Client) {
    return { username: this.#users.get(client), clientId: client.id };
  }
}
