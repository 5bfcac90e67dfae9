// The group queues of several broker nodes, on Redis Streams (group-store.ts, ClusterGroupStore):
// one stream per shared subscription with one consumer group on it, each member a consumer. Which
// groups exist, and who their members are, lives beside the streams, so routing a publish is one
// Lua script that matches its topic against every group's filter and adds it to their streams
// atomically with the membership changes: no node can miss a group another node just created.
// A publish is acknowledged once the script returned, that is once Redis holds it (with the AOF
// policy the README documents). Keys: `<prefix>groups` (hash of shares), `<prefix>members:<share>`,
// `<prefix>memberships:<client>` (sets), `<prefix>queue:<share>` (the stream, consumer group
// `members`), `<prefix>declared` (the groups kept without members, BROKER_GROUPS: each node's start
// sets it, so every node is given the same list); notices of new entries on the channel `<prefix>appended`.
import { Redis } from 'ioredis';
import type { ClusterGroupStore, EntryId, StoredEntry } from './group-store.js';

const GROUP = 'members';
/** Where a member that leaves parks what it held, idle enough for anyone to claim at once. */
const DEPARTED = '~departed';
/** A member's consumer name: never the parking one, whatever its client id. */
const consumer = (clientId: string) => `c:${clientId}`;
const LONG_IDLE_MS = 365 * 24 * 3600 * 1000;
/** Entries per XPENDING / XCLAIM in the scripts (Lua's unpack has a limit). */
const BATCH = 1000;

/** MQTT topic matching in Lua, as matchesFilter (persistence.ts): a `$` topic never matches a leading wildcard. */
const MATCH = `
local function split(s)
  local parts = {}
  for part in string.gmatch(s .. '/', '([^/]*)/') do parts[#parts + 1] = part end
  return parts
end
local function filterOf(share)
  local rest = string.sub(share, 8)
  local slash = string.find(rest, '/', 1, true)
  if not slash then return nil end
  return string.sub(rest, slash + 1)
end
local function matches(filter, f, topic, t)
  local first = string.sub(filter, 1, 1)
  if string.sub(topic, 1, 1) == '$' and (first == '+' or first == '#') then return false end
  for i = 1, #f do
    if f[i] == '#' then return true end
    if i > #t then return false end
    if f[i] ~= '+' and f[i] ~= t[i] then return false end
  end
  return #f == #t
end
`;

// ARGV: prefix, then topic and packet of each publish. Returns, per publish, the shares it went to.
const ROUTE = `${MATCH}
local prefix = ARGV[1]
local shares = redis.call('HKEYS', prefix .. 'groups')
local filters = {}
for i, share in ipairs(shares) do
  local filter = filterOf(share)
  if filter then filters[#filters + 1] = { share, filter, split(filter) } end
end
local out, touched, notice = {}, {}, {}
for i = 2, #ARGV, 2 do
  local topic, packet = ARGV[i], ARGV[i + 1]
  local t = split(topic)
  local went = {}
  for _, g in ipairs(filters) do
    if matches(g[2], g[3], topic, t) then
      redis.call('XADD', prefix .. 'queue:' .. g[1], '*', 'p', packet)
      went[#went + 1] = g[1]
      if not touched[g[1]] then touched[g[1]] = true; notice[#notice + 1] = g[1] end
    end
  end
  out[#out + 1] = went
end
if #notice > 0 then redis.call('PUBLISH', prefix .. 'appended', cjson.encode(notice)) end
return out`;

/** A group's stream with its consumer group, made if missing, and the group known to routing. */
const OPEN = `
local function open(prefix, share)
  local key = prefix .. 'queue:' .. share
  if redis.call('EXISTS', key) == 0 then redis.call('XGROUP', 'CREATE', key, '${GROUP}', '0', 'MKSTREAM') end
  redis.call('HSET', prefix .. 'groups', share, 1)
end
`;

// ARGV: prefix, share, client.
const JOIN = `${OPEN}
local prefix, share, client = ARGV[1], ARGV[2], ARGV[3]
open(prefix, share)
redis.call('SADD', prefix .. 'members:' .. share, client)
redis.call('SADD', prefix .. 'memberships:' .. client, share)
return 1`;

// ARGV: prefix, shares… The groups kept whether or not they have members (BROKER_GROUPS): created
// if need be, and marked so that their last member's leave keeps them. Groups declared before and
// not now lose the mark, and go if they have no member. Returns share, entries of each that went.
const DECLARE = `${OPEN}
local prefix = ARGV[1]
local declared = prefix .. 'declared'
local previous = redis.call('SMEMBERS', declared)
redis.call('DEL', declared)
local now = {}
for i = 2, #ARGV do
  local share = ARGV[i]
  open(prefix, share)
  redis.call('SADD', declared, share)
  now[share] = true
end
local dropped = {}
for _, share in ipairs(previous) do
  local members = prefix .. 'members:' .. share
  if not now[share] and redis.call('SCARD', members) == 0 then
    local key = prefix .. 'queue:' .. share
    dropped[#dropped + 1] = share
    dropped[#dropped + 1] = redis.call('XLEN', key)
    redis.call('DEL', key, members)
    redis.call('HDEL', prefix .. 'groups', share)
  end
end
return dropped`;

// ARGV: prefix, share, client, its consumer name.
const LEAVE = `
local prefix, share, client, consumer = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = prefix .. 'queue:' .. share
local members = prefix .. 'members:' .. share
redis.call('SREM', prefix .. 'memberships:' .. client, share)
if redis.call('SREM', members, client) == 0 then return 0 end
if redis.call('SCARD', members) == 0 and redis.call('SISMEMBER', prefix .. 'declared', share) == 0 then
  redis.call('DEL', key, members)
  redis.call('HDEL', prefix .. 'groups', share)
  return 2
end
if redis.call('EXISTS', key) == 1 then
  while true do
    local pending = redis.call('XPENDING', key, '${GROUP}', '-', '+', ${BATCH}, consumer)
    if #pending == 0 then break end
    -- (unpack only spreads in last position: the whole command is one table)
    local args = { key, '${GROUP}', '${DEPARTED}', 0 }
    for i, p in ipairs(pending) do args[#args + 1] = p[1] end
    args[#args + 1] = 'IDLE'
    args[#args + 1] = ${LONG_IDLE_MS}
    args[#args + 1] = 'JUSTID'
    redis.call('XCLAIM', unpack(args))
    if #pending < ${BATCH} then break end
  end
  redis.call('XGROUP', 'DELCONSUMER', key, '${GROUP}', consumer)
end
return 1`;

// ARGV: prefix, share, consumer. What the member holds, held again (idle time renewed) and returned.
const HELD = `
local key = ARGV[1] .. 'queue:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return {} end
local pending = redis.call('XPENDING', key, '${GROUP}', '-', '+', ${BATCH}, ARGV[3])
if #pending == 0 then return {} end
local ids = {}
for i, p in ipairs(pending) do ids[i] = p[1] end
return redis.call('XCLAIM', key, '${GROUP}', ARGV[3], 0, unpack(ids))`;

// ARGV: prefix, share, consumer, ids…: renews the idle time of those the member still holds (and only those:
// an entry another member claimed meanwhile stays theirs).
const KEEP = `
local key = ARGV[1] .. 'queue:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return 0 end
local args = { key, '${GROUP}', ARGV[3], 0 }
for i = 4, #ARGV do
  local p = redis.call('XPENDING', key, '${GROUP}', ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[3] then args[#args + 1] = ARGV[i] end
end
if #args == 4 then return 0 end
args[#args + 1] = 'JUSTID'
redis.call('XCLAIM', unpack(args))
return #args - 5`;

// ARGV: prefix, share, consumer, count. New entries, now the member's (a group that is gone: none).
const TAKE = `
local key = ARGV[1] .. 'queue:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return {} end
local got = redis.call('XREADGROUP', 'GROUP', '${GROUP}', ARGV[3], 'COUNT', ARGV[4], 'STREAMS', key, '>')
if not got then return {} end
return got[1][2]`;

// ARGV: prefix, share, consumer, idle ms, count. Entries idle that long, now the member's.
const CLAIM = `
local key = ARGV[1] .. 'queue:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return {} end
return redis.call('XAUTOCLAIM', key, '${GROUP}', ARGV[3], ARGV[4], '0-0', 'COUNT', ARGV[5])[2]`;

type RawEntry = [Buffer, Buffer[]] | null;

type Scripted = Redis & {
  groupRoute(...args: Array<string | Buffer>): Promise<Buffer[][]>;
  groupJoin(prefix: string, share: string, client: string): Promise<number>;
  groupLeave(prefix: string, share: string, client: string, consumer: string): Promise<number>;
  groupDeclare(prefix: string, ...shares: string[]): Promise<Array<string | number>>;
  groupHeldBuffer(prefix: string, share: string, client: string): Promise<RawEntry[]>;
  groupTakeBuffer(prefix: string, share: string, client: string, count: number): Promise<RawEntry[]>;
  groupClaimBuffer(prefix: string, share: string, client: string, idleMs: number, count: number): Promise<RawEntry[]>;
  groupKeep(prefix: string, share: string, client: string, ...ids: string[]): Promise<number>;
};

const entriesOf = (raw: readonly RawEntry[] | null | undefined): StoredEntry[] => {
  const out: StoredEntry[] = [];
  for (const e of raw ?? []) {
    if (!e) continue; // deleted meanwhile
    const [id, fields] = e;
    const at = fields.findIndex((f, i) => i % 2 === 0 && f.toString() === 'p');
    if (at >= 0) out.push({ id: id.toString(), packet: fields[at + 1]! });
  }
  return out;
};

/** A notice of the route script: a JSON array of shares (which may hold any character but U+0000). */
export function parseNotice(message: string): string[] | undefined {
  try {
    const shares: unknown = JSON.parse(message);
    return Array.isArray(shares) && shares.every((s) => typeof s === 'string') ? shares : undefined;
  } catch {
    return undefined;
  }
}

/** A group or consumer group that is gone (its last member left): nothing to read. */
const isGone = (err: unknown) => /NOGROUP|no such key/i.test(String((err as Error).message));

export interface RedisGroupStoreOptions {
  url: string;
  /** Key prefix, so that several clusters (tests) can share one Redis. */
  prefix?: string;
}

export class RedisGroupStore implements ClusterGroupStore {
  readonly #db: Scripted;
  readonly #notices: Redis;
  readonly #prefix: string;
  readonly #listeners: Array<(shares: string[]) => void> = [];

  constructor({ url, prefix = 'woodytoys:broker:' }: RedisGroupStoreOptions) {
    this.#prefix = prefix;
    // Commands of one turn leave in one round trip (acknowledgements, reads of several members).
    this.#db = new Redis(url, { enableAutoPipelining: true }) as Scripted;
    this.#db.defineCommand('groupRoute', { numberOfKeys: 0, lua: ROUTE });
    this.#db.defineCommand('groupJoin', { numberOfKeys: 0, lua: JOIN });
    this.#db.defineCommand('groupLeave', { numberOfKeys: 0, lua: LEAVE });
    this.#db.defineCommand('groupDeclare', { numberOfKeys: 0, lua: DECLARE });
    this.#db.defineCommand('groupHeld', { numberOfKeys: 0, lua: HELD });
    this.#db.defineCommand('groupKeep', { numberOfKeys: 0, lua: KEEP });
    this.#db.defineCommand('groupTake', { numberOfKeys: 0, lua: TAKE });
    this.#db.defineCommand('groupClaim', { numberOfKeys: 0, lua: CLAIM });
    this.#notices = new Redis(url);
    this.#notices.on('message', (_channel: string, message: string) => {
      const shares = parseNotice(message);
      if (shares) for (const listener of this.#listeners) listener(shares);
    });
  }

  /** The Redis channel of the notices of new entries. */
  get noticeChannel(): string {
    return `${this.#prefix}appended`;
  }

  /** Resolves once both connections are up (the notices subscribed). */
  async ready(): Promise<void> {
    await this.#notices.subscribe(this.noticeChannel);
    await this.#db.ping();
  }

  /** Errors of the connections (Redis down): reported by the caller; ioredis reconnects. */
  onError(listener: (err: Error) => void): void {
    this.#db.on('error', listener);
    this.#notices.on('error', listener);
  }

  async route(publishes: readonly { topic: string; packet: Buffer }[]): Promise<string[][]> {
    const args: Array<string | Buffer> = [this.#prefix];
    for (const { topic, packet } of publishes) args.push(topic, packet);
    const out = await this.#db.groupRoute(...args);
    return out.map((shares) => shares.map(String));
  }

  async join(share: string, clientId: string): Promise<void> {
    await this.#db.groupJoin(this.#prefix, share, clientId);
  }

  async declare(shares: readonly string[]): Promise<{ share: string; messages: number }[]> {
    const out = await this.#db.groupDeclare(this.#prefix, ...shares);
    const dropped: { share: string; messages: number }[] = [];
    for (let i = 0; i + 1 < out.length; i += 2) dropped.push({ share: String(out[i]), messages: Number(out[i + 1]) });
    return dropped;
  }

  async leave(share: string, clientId: string): Promise<void> {
    await this.#db.groupLeave(this.#prefix, share, clientId, consumer(clientId));
  }

  memberships(clientId: string): Promise<string[]> {
    return this.#db.smembers(`${this.#prefix}memberships:${clientId}`);
  }

  async take(share: string, clientId: string, limit: number): Promise<StoredEntry[]> {
    if (limit <= 0) return [];
    try {
      return entriesOf(await this.#db.groupTakeBuffer(this.#prefix, share, consumer(clientId), limit));
    } catch (err) {
      if (isGone(err)) return [];
      throw err;
    }
  }

  async claim(share: string, clientId: string, idleMs: number, limit: number): Promise<StoredEntry[]> {
    if (limit <= 0) return [];
    try {
      return entriesOf(await this.#db.groupClaimBuffer(this.#prefix, share, consumer(clientId), idleMs, limit));
    } catch (err) {
      if (isGone(err)) return [];
      throw err;
    }
  }

  async held(share: string, clientId: string): Promise<StoredEntry[]> {
    return entriesOf(await this.#db.groupHeldBuffer(this.#prefix, share, consumer(clientId)));
  }

  async keep(share: string, clientId: string, ids: readonly EntryId[]): Promise<void> {
    for (let i = 0; i < ids.length; i += BATCH) {
      await this.#db.groupKeep(this.#prefix, share, consumer(clientId), ...ids.slice(i, i + BATCH).map(String));
    }
  }

  ack(share: string, ids: readonly EntryId[]): void {
    if (ids.length === 0) return;
    const key = this.#key(share);
    const list = ids.map(String);
    // Not awaited (the interface's promise: durable soon after); a failure only means a redelivery.
    this.#db.xack(key, GROUP, ...list).catch(() => {});
    this.#db.xdel(key, ...list).catch(() => {});
  }

  async depth(share: string): Promise<{ stored: number; held: number }> {
    const key = this.#key(share);
    const [stored, pending] = await Promise.all([this.#db.xlen(key), this.#db.xpending(key, GROUP).catch(() => [0])]);
    return { stored, held: Number((pending as unknown[])[0] ?? 0) };
  }

  onAppended(listener: (shares: string[]) => void): void {
    this.#listeners.push(listener);
  }

  async close(): Promise<void> {
    this.#notices.disconnect();
    await this.#db.quit().catch(() => this.#db.disconnect());
  }

  #key(share: string) {
    return `${this.#prefix}queue:${share}`;
  }
}
