// Access control in Mosquitto's acl_file syntax (`user`, `topic`, `pattern` with %u and %c, access
// read | write | readwrite | deny), so one file serves both brokers. Rules before the first `user`
// line apply to anonymous clients, as in Mosquitto.
//
// Two rules Mosquitto has no words for are written as `#@` lines, which Mosquitto reads as comments:
//   #@ clientid <id> …           the client ids this user may connect with: exact, or a prefix ending in *
//   #@ group <name> <filter>     this user may join shared group <name> for filters <filter> covers
//   #@ queue <messages>          the most messages one of its persistent sessions keeps
//   #@ sessions <n>              the most persistent sessions its clients keep (session-cap.ts)
//   #@ filters <n>               the most topic filters one of its clients holds at once
// A client id belongs to one user only: two users whose client-id rules overlap are a parse error.
// The bounds are for logins strangers hold: a user with them needs client-id rules (without, it
// can keep no session) and no group rules (a group member's session carries a workflow).
import { readFileSync } from 'node:fs';
import { topicMatches } from '../lib/events.js';

type Access = 'read' | 'write' | 'readwrite' | 'deny';

interface Rule {
  access: Access;
  topic: string;
  /** a `pattern` rule: %u and %c are replaced per client */
  pattern: boolean;
}

/** A `#@ group` rule: who may join which shared group, for which filters. */
export interface GroupRule {
  user: string;
  group: string;
  filter: string;
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

/** A client id or group name pattern: the exact name, or a prefix followed by `*`. */
export function nameMatches(pattern: string, name: string): boolean {
  return pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

/** Could one name match both patterns? */
function namesOverlap(a: string, b: string): boolean {
  if (a.endsWith('*') && b.endsWith('*')) return a.startsWith(b.slice(0, -1)) || b.startsWith(a.slice(0, -1));
  if (a.endsWith('*')) return nameMatches(a, b);
  return nameMatches(b, a);
}

const NAME_PATTERN = /^[^*\s]+\*?$/;

export class Acl {
  private constructor(
    private readonly anonymous: Rule[],
    private readonly byUser: Map<string, Rule[]>,
    private readonly patterns: Rule[],
    /** user → the client-id patterns it may use */
    private readonly clientIds: Map<string, string[]>,
    readonly groupRules: GroupRule[],
    /** user → the most messages one of its persistent sessions keeps ("#@ queue"); absent: no bound */
    private readonly queueLimits: Map<string, number>,
    /** user → the most persistent sessions its clients keep ("#@ sessions"); absent: no bound */
    private readonly sessionLimits: Map<string, number>,
    /** user → the most topic filters one of its clients holds ("#@ filters"); absent: no bound */
    private readonly filterLimits: Map<string, number>,
  ) {}

  static parse(text: string): Acl {
    const anonymous: Rule[] = [];
    const byUser = new Map<string, Rule[]>();
    const patterns: Rule[] = [];
    const clientIds = new Map<string, string[]>();
    const groupRules: GroupRule[] = [];
    const queueLimits = new Map<string, number>();
    const sessionLimits = new Map<string, number>();
    const filterLimits = new Map<string, number>();
    /** The bound rules: where each goes, its argument's name and most digits, and whether it bounds sessions (checked below). */
    const bounds = new Map([
      ['queue', { limits: queueLimits, what: 'messages', digits: 7, sessions: true }],
      ['sessions', { limits: sessionLimits, what: 'n', digits: 6, sessions: true }],
      ['filters', { limits: filterLimits, what: 'n', digits: 6, sessions: false }],
    ]);
    /** user → the line of its first session bound, for the checks once every line is read */
    const boundLines = new Map<string, number>();
    let current = anonymous;
    let user: string | undefined;
    text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      const fail = (why: string) => {
        throw new Error(`ACL line ${i + 1}: ${why}: "${line}"`);
      };
      if (line.startsWith('#@')) {
        const [keyword, ...args] = line.slice(2).trim().split(/\s+/);
        if (!user) fail('client-id, group, queue, sessions and filters rules belong to a user');
        const bound = bounds.get(keyword!);
        if (bound) {
          if (args.length !== 1 || !new RegExp(`^[1-9]\\d{0,${bound.digits - 1}}$`).test(args[0]!)) fail(`expected "#@ ${keyword} <${bound.what}>", a whole number from 1 to ${'9'.repeat(bound.digits)}`);
          if (bound.limits.has(user!)) fail(`user ${user} has a ${keyword} rule already`);
          bound.limits.set(user!, Number(args[0]));
          if (bound.sessions && !boundLines.has(user!)) boundLines.set(user!, i + 1);
          return;
        }
        const names = keyword === 'group' ? args.slice(0, 1) : args;
        if (!names.every((n) => NAME_PATTERN.test(n))) fail('a name is exact or a prefix ending in *');
        if (keyword === 'clientid' && args.length > 0) clientIds.get(user!)!.push(...args);
        else if (keyword === 'group' && args.length === 2) groupRules.push({ user: user!, group: args[0]!, filter: args[1]! });
        else fail('expected "#@ clientid <id> …", "#@ group <name> <filter>", "#@ queue <messages>", "#@ sessions <n>" or "#@ filters <n>"');
        return;
      }
      if (!line || line.startsWith('#')) return;
      const [keyword, ...rest] = line.split(/\s+/);
      if (keyword === 'user') {
        const name = line.slice('user'.length).trim();
        if (!name) fail('user needs a name');
        if (!byUser.has(name)) byUser.set(name, []);
        if (!clientIds.has(name)) clientIds.set(name, []);
        current = byUser.get(name)!;
        user = name;
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
    const owned = [...clientIds].flatMap(([u, ids]) => ids.map((id) => ({ u, id })));
    for (const a of owned) {
      const clash = owned.find((b) => b.u !== a.u && namesOverlap(a.id, b.id));
      if (clash) throw new Error(`ACL: client id ${a.id} of user ${a.u} overlaps ${clash.id} of user ${clash.u}: a client id belongs to one user`);
    }
    for (const [u, line] of boundLines) {
      if (clientIds.get(u)!.length === 0) throw new Error(`ACL line ${line}: user ${u} has a queue or sessions bound but no "#@ clientid" rule: it can keep no session`);
      if (groupRules.some((r) => r.user === u)) throw new Error(`ACL line ${line}: user ${u} has a queue or sessions bound and group rules: a group member's session carries a workflow and is never cut`);
    }
    return new Acl(anonymous, byUser, patterns, clientIds, groupRules, queueLimits, sessionLimits, filterLimits);
  }

  static read(file: string): Acl {
    return Acl.parse(readFileSync(file, 'utf8'));
  }

  /** Every user the ACL names, with the client-id patterns it may use (for lib/asyncapi.ts). */
  get users(): ReadonlyMap<string, readonly string[]> {
    return this.clientIds;
  }

  /** The user whose client-id rules match `clientId` (one at most), if any. */
  clientIdOwner(clientId: string): string | undefined {
    return [...this.clientIds].find(([, ids]) => ids.some((p) => nameMatches(p, clientId)))?.[0];
  }

  /** The most messages one of `username`'s persistent sessions keeps, its client away or connected; undefined: no bound. */
  queueLimit(username: string): number | undefined {
    return this.queueLimits.get(username);
  }

  /** The most persistent sessions `username`'s clients keep; undefined: no bound. */
  sessionLimit(username: string): number | undefined {
    return this.sessionLimits.get(username);
  }

  /** The most topic filters one of `username`'s clients holds at once; undefined: no bound. */
  filterLimit(username: string): number | undefined {
    return this.filterLimits.get(username);
  }

  /** Why `username` may not connect with `clientId`, or undefined when the id is one of its own. */
  clientIdRefusal(username: string, clientId: string): string | undefined {
    const owner = this.clientIdOwner(clientId);
    if (owner === username) return undefined;
    const own = this.clientIds.get(username) ?? [];
    if (owner) return `client id ${clientId} belongs to user ${owner}`;
    if (own.length === 0) return `user ${username} has no "#@ clientid" rule in the ACL`;
    return `client id ${clientId} is not one of user ${username}'s (${own.join(', ')})`;
  }

  /** Why this client may not join shared group `group` with `filter`, or undefined when a group rule allows it. */
  groupRefusal(who: Who, group: string, filter: string): string | undefined {
    const named = this.groupRules.filter((r) => r.user === who.username && nameMatches(r.group, group));
    if (named.length === 0) return `no "#@ group ${group} …" rule for user ${who.username ?? '(anonymous)'} in the ACL`;
    if (named.some((r) => filterCovers(r.filter, filter))) return undefined;
    return `the "#@ group ${group}" rules of user ${who.username} cover ${named.map((r) => r.filter).join(', ')}, not ${filter}`;
  }

  /** The users who may join shared group `group` with `filter` (a group rule, and read rules covering it). */
  groupJoiners(group: string, filter: string): string[] {
    return [...this.clientIds.keys()].filter((username) => {
      const who = { username, clientId: '' };
      return this.groupRefusal(who, group, filter) === undefined && this.canSubscribe(who, filter, true);
    });
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
