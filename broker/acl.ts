// Access control in Mosquitto's acl_file syntax (`user`, `topic`, `pattern` with %u and %c, access
// read | write | readwrite | deny), so one file serves both brokers. Rules before the first `user`
// line apply to anonymous clients, as in Mosquitto.
import { readFileSync } from 'node:fs';
import { topicMatches } from '../lib/events.js';

type Access = 'read' | 'write' | 'readwrite' | 'deny';

interface Rule {
  access: Access;
  topic: string;
  /** a `pattern` rule: %u and %c are replaced per client */
  pattern: boolean;
}

export interface Who {
  username: string | undefined;
  clientId: string;
}

const ACCESS = new Set<Access>(['read', 'write', 'readwrite', 'deny']);

function levels(t: string) {
  return t.split('/');
}

/** Could one topic match both filters? */
export function filtersIntersect(a: string, b: string): boolean {
  const x = levels(a);
  const y = levels(b);
  for (let i = 0; ; i++) {
    if (i === x.length && i === y.length) return true;
    // "a/#" also matches "a" itself
    if (i === x.length) return y[i] === '#';
    if (i === y.length) return x[i] === '#';
    if (x[i] === '#' || y[i] === '#') return true;
    if (x[i] !== '+' && y[i] !== '+' && x[i] !== y[i]) return false;
  }
}

/** Does `rule` match every topic that `filter` matches? */
export function filterCovers(rule: string, filter: string): boolean {
  const r = levels(rule);
  const f = levels(filter);
  for (let i = 0; ; i++) {
    if (r[i] === '#') return true;
    if (i === r.length || i === f.length) return i === r.length && i === f.length;
    if (f[i] === '#') return false;
    if (r[i] === '+') continue;
    if (f[i] === '+' || r[i] !== f[i]) return false;
  }
}

export class Acl {
  private constructor(
    private readonly anonymous: Rule[],
    private readonly byUser: Map<string, Rule[]>,
    private readonly patterns: Rule[],
  ) {}

  static parse(text: string): Acl {
    const anonymous: Rule[] = [];
    const byUser = new Map<string, Rule[]>();
    const patterns: Rule[] = [];
    let current = anonymous;
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (!line || line.startsWith('#')) return;
      const [keyword, ...rest] = line.split(/\s+/);
      const fail = (why: string) => {
        throw new Error(`ACL line ${i + 1}: ${why}: "${line}"`);
      };
      if (keyword === 'user') {
        const name = line.slice('user'.length).trim();
        if (!name) fail('user needs a name');
        if (!byUser.has(name)) byUser.set(name, []);
        current = byUser.get(name)!;
      } else if (keyword === 'topic' || keyword === 'pattern') {
        let access: Access = 'readwrite';
        if (rest.length > 1 && ACCESS.has(rest[0] as Access)) access = rest.shift() as Access;
        const topic = rest.join(' ');
        if (!topic) fail('a topic is required');
        (keyword === 'pattern' ? patterns : current).push({ access, topic, pattern: keyword === 'pattern' });
      } else {
        fail(`unknown keyword ${keyword}`);
      }
    });
    return new Acl(anonymous, byUser, patterns);
  }

  static read(file: string): Acl {
    return Acl.parse(readFileSync(file, 'utf8'));
  }

  /** May this client publish to `topic`? */
  canPublish(who: Who, topic: string): boolean {
    return this.#check(who, 'write', (rule) => topicMatches(rule, topic));
  }

  /** May this client receive a message published on `topic`? */
  canRead(who: Who, topic: string): boolean {
    return this.#check(who, 'read', (rule) => topicMatches(rule, topic));
  }

  /**
   * May this client subscribe to `filter`? `whole`: only if its rules allow every topic the filter
   * matches (shared subscriptions, where the broker cannot skip a member per message); otherwise a
   * filter is granted when some topic in it is readable and each message is checked on delivery.
   */
  canSubscribe(who: Who, filter: string, whole: boolean): boolean {
    const allowed = this.#rules(who).some((r) => (r.access === 'read' || r.access === 'readwrite') && (whole ? filterCovers(r.topic, filter) : filtersIntersect(r.topic, filter)));
    const denied = this.#rules(who).some((r) => r.access === 'deny' && (whole ? filtersIntersect(r.topic, filter) : filterCovers(r.topic, filter)));
    return allowed && !denied;
  }

  #check(who: Who, want: 'read' | 'write', matches: (rule: string) => boolean): boolean {
    let allowed = false;
    for (const r of this.#rules(who)) {
      if (!matches(r.topic)) continue;
      if (r.access === 'deny') return false;
      if (r.access === want || r.access === 'readwrite') allowed = true;
    }
    return allowed;
  }

  #rules(who: Who): Rule[] {
    const own = who.username === undefined ? this.anonymous : (this.byUser.get(who.username) ?? []);
    if (this.patterns.length === 0) return own;
    const expanded = this.patterns
      .filter((p) => who.username !== undefined || !p.topic.includes('%u'))
      .map((p) => ({ ...p, topic: p.topic.replaceAll('%u', who.username ?? '').replaceAll('%c', who.clientId) }));
    return [...own, ...expanded];
  }
}
