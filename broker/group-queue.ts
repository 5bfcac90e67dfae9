// Shared subscriptions ($share/{group}/{filter}) on top of Aedes, which has none: Aedes keeps the
// subscription as a literal filter that no publish matches, and this file does the rest. Each shared
// subscription has a durable queue in a GroupStore (SQLite on one node, group-store.ts), of which
// only a bounded window is in memory: entries are read from the store as members make room, and a
// publish goes straight into the window only while nothing older waits in the store. Messages go
// round-robin to online members whose in-flight window has room, so a member holds at most `window`
// messages and the backlog stays in the store; what one pass hands a member leaves in one write. A
// member that leaves with unacknowledged messages gets them back if it returns within the grace
// period; otherwise they go to another member.
//
// With several broker nodes (a ClusterGroupStore, on Redis) the store knows the groups and their
// members and routes each publish itself; this node reads entries for the members connected to it,
// each within its window, renews what they hold so that no other node claims it, and claims what
// members gone past the grace period (on any node) left behind.
import type { Aedes, Client } from 'aedes';
import type { Logger } from '../lib/log.js';
import { topicMatches } from '../lib/events.js';
import type { ClusterGroupStore, EntryId, GroupStore, NewEntry, StoredEntry } from './group-store.js';
import type { SessionPersistence, StoredPacket } from './persistence.js';
import { nextPacketId, writePackets } from './aedes-adapter.js';
import { asQos0, encodePublish, qosOf, stampPublish } from './publish-packet.js';

export const SHARE_PREFIX = '$share/';

/**
 * A share that may be declared (BROKER_GROUPS) → its parts; why not, as a string: it must be a
 * well-formed shared subscription whose filter is valid MQTT (`#` only as the last level, `+` only
 * as a whole level).
 */
function parseDeclaration(share: string): { group: string; filter: string } | string {
  if (!share.startsWith(SHARE_PREFIX)) return `${share}: a shared subscription starts with ${SHARE_PREFIX}`;
  const parsed = parseShare(share);
  if (typeof parsed === 'string') return `${share}: ${parsed}`;
  const levels = parsed.filter.split('/');
  const bad = levels.findIndex((l, i) => (l.includes('#') && (l !== '#' || i !== levels.length - 1)) || (l.includes('+') && l !== '+'));
  if (bad >= 0) return `${share}: level ${JSON.stringify(levels[bad])} of the filter is not valid MQTT ('#' only alone and last, '+' only alone)`;
  return parsed;
}

/**
 * BROKER_GROUPS: comma-separated shared subscriptions to keep from the start, or `none`. Each must be
 * well formed and joinable by someone (`mayJoin`): a group nobody may join would only fill.
 */
export function parseDeclaredGroups(value: string, mayJoin: (group: string, filter: string) => boolean): string[] {
  if (value.trim() === 'none') return [];
  const shares = [...new Set(value.split(',').map((s) => s.trim()).filter(Boolean))];
  for (const share of shares) {
    const parsed = parseDeclaration(share);
    if (typeof parsed === 'string') throw new Error(parsed);
    const { group, filter } = parsed;
    if (!mayJoin(group, filter)) {
      throw new Error(`${share}: no user may join it (the ACL's "#@ group" and read rules), so it would only fill; add the rules, or leave it out of BROKER_GROUPS (none: declare nothing)`);
    }
  }
  return shares;
}

/** `$share/{group}/{filter}` → its parts; a reason string when it is malformed. */
export function parseShare(topic: string): { group: string; filter: string } | string {
  const rest = topic.slice(SHARE_PREFIX.length);
  const slash = rest.indexOf('/');
  const group = slash < 0 ? rest : rest.slice(0, slash);
  const filter = slash < 0 ? '' : rest.slice(slash + 1);
  if (!group || /[+#]/.test(group)) return 'the share name must be non-empty and hold no wildcard';
  if (!filter) return 'a topic filter must follow the share name';
  return { group, filter };
}

/** Dispatch passes a turn of the event loop that run as soon as what asked for them is done (#dispatch). */
const SOON_PASSES = 16;

interface Entry extends StoredEntry {
  /** Write-behind: handed out before being written; its batch settles once it is acknowledged or written. */
  unwritten?: Unwritten;
}

/**
 * Write-behind (one node): the entries of one ingest turn that went straight to the members'
 * window without being written first. Their publishes' PUBACKs wait for `settled`: each entry either
 * acknowledged by its member (then it is never written: its effect is durable with the member) or
 * written to the store, whichever comes first. What is still unacknowledged after `writeBehindMs`,
 * or when a later entry must go to the store (ids follow the order of publishes), is written then.
 * A crash before that loses nothing the publisher was told is safe: it has no PUBACK and sends again.
 */
class Unwritten {
  readonly entries: Array<[GroupQueue, Entry]> = [];
  /** Entries neither acknowledged nor written yet. */
  left = 0;
  timer: NodeJS.Timeout | undefined;
  readonly settled: Promise<void>;
  resolve!: () => void;
  reject!: (err: unknown) => void;
  constructor() {
    this.settled = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
}

interface Member {
  clientId: string;
  qos: number;
  /** packet identifier (on the member's current connection) → message */
  inflight: Map<number, Entry>;
  /** Entries given to it in the pass under way, not yet sent (several nodes: being read for it). */
  assigned: number;
  /** Several nodes: a read from the store for it is under way. */
  reading?: boolean;
}

/** Entries in memory waiting for a member: first in, first out, with O(1) removal at the head. */
class Backlog {
  #items: Entry[] = [];
  #head = 0;
  bytes = 0;
  get length() {
    return this.#items.length - this.#head;
  }
  push(e: Entry) {
    this.#items.push(e);
    this.bytes += e.packet.length;
  }
  shift(): Entry | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const e = this.#items[this.#head]!;
    this.#items[this.#head++] = undefined as never;
    this.bytes -= e.packet.length;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return e;
  }
  /** Puts entries back in front, in the order given. */
  unshift(entries: Entry[]) {
    this.#items = [...entries, ...this.#items.slice(this.#head)];
    this.#head = 0;
    for (const e of entries) this.bytes += e.packet.length;
  }
  clear() {
    this.#items = [];
    this.#head = 0;
    this.bytes = 0;
  }
}

/** One shared subscription: its members and the in-memory window of its queue. */
class GroupQueue {
  readonly backlog = new Backlog();
  readonly members = new Map<string, Member>();
  /** Entries not yet acknowledged, wherever they are: in the store, in memory, in flight. */
  total = 0;
  /** The newest entry taken into memory: the next read from the store starts after it. */
  cursor: EntryId | undefined;
  reading = false;
  /** Several nodes: the store may hold entries nobody has taken (a notice came, or the last read was full). */
  more = true;
  /** Several nodes: notices so far; a read that started before the latest one cannot say there is nothing more. */
  notices = 0;
  /** Several nodes: claim entries of departed members in the next reads. */
  claimDue = false;
  /** Several nodes: how many of `total` members hold, cluster-wide (refreshed with it, once a second). */
  held = 0;
  /** Kept from the broker's start whether or not it has members (BROKER_GROUPS): it outlives its last member. */
  declared = false;
  redispatched = 0;
  delivered = 0;
  /** Entries written to the store, and entries acknowledged before they had to be (write-behind). */
  written = 0;
  neverWritten = 0;
  #turn = 0;
  /** members in turn order; rebuilt after a change */
  #list: Member[] | undefined;
  readonly #matches = new Map<string, boolean>();

  constructor(
    readonly share: string,
    readonly filter: string,
  ) {}

  membersChanged() {
    this.#list = undefined;
  }

  /** Does a publish on `topic` belong to this shared subscription? (topics repeat: remembered) */
  matches(topic: string): boolean {
    let m = this.#matches.get(topic);
    if (m === undefined) {
      m = topicMatches(this.filter, topic);
      if (this.#matches.size > 10_000) this.#matches.clear();
      this.#matches.set(topic, m);
    }
    return m;
  }

  get inflight() {
    let n = 0;
    for (const m of this.members.values()) n += m.inflight.size;
    return n;
  }

  /** Entries only the store holds (not in memory, not in flight): what reads will bring in. */
  get unread() {
    return this.total - this.backlog.length - this.inflight;
  }

  /** The next member, in turn, that is online and has room in its window. */
  nextReady(window: number, online: Map<string, Client>): Member | undefined {
    const list = (this.#list ??= [...this.members.values()]);
    for (let i = 0; i < list.length; i++) {
      const m = list[(this.#turn + i) % list.length]!;
      if (m.inflight.size + m.assigned < window && online.has(m.clientId)) {
        this.#turn = (this.#turn + i + 1) % list.length;
        return m;
      }
    }
    return undefined;
  }
}

/** A store several nodes share routes publishes itself and keeps entries per member. */
const isCluster = (store: GroupStore | ClusterGroupStore): store is ClusterGroupStore => 'route' in store;

export interface SharedSubscriptionOptions {
  store: GroupStore | ClusterGroupStore;
  persistence: SessionPersistence;
  log: Logger;
  /** Messages a member may hold unacknowledged. */
  window: number;
  /** How long a departed member's unacknowledged messages wait for it before going to another member. */
  graceMs: number;
  /** At most this many entries (and bytes) of each group's queue in memory; the rest stays in the store. */
  memory: { messages: number; bytes: number };
  /**
   * One node: how long an entry handed to a member may stay unwritten waiting for its
   * acknowledgement (its publisher's PUBACK waits as long); 0 writes every entry before handing it out.
   */
  writeBehindMs?: number;
  /**
   * Shared subscriptions kept from the start, with or without members (`$share/<group>/<filter>`,
   * checked by parseDeclaredGroups): what is published for one before its first member has ever
   * subscribed waits for it, and it stays when its last member leaves.
   */
  declared?: readonly string[];
}

export class SharedSubscriptions {
  readonly #queues = new Map<string, GroupQueue>();
  readonly #online = new Map<string, Client>();
  readonly #graceTimers = new Map<string, NodeJS.Timeout>();
  /** clientId → packet identifier → the queue holding that in-flight message */
  readonly #inflightByClient = new Map<string, Map<number, GroupQueue>>();
  /** The queues each kind of dispatch pass will hand out (#dispatch), and whether it is asked for. */
  readonly #passes = {
    soon: { dirty: new Set<GroupQueue>(), scheduled: false },
    later: { dirty: new Set<GroupQueue>(), scheduled: false },
  };
  /** Passes run at once (process.nextTick) since the last turn's check phase. */
  #soonPasses = 0;
  readonly #store: GroupStore;
  readonly #cluster: ClusterGroupStore | undefined;
  readonly #timers: NodeJS.Timeout[] = [];
  #keepFailing = false;
  /** Write-behind batches not settled yet, oldest first. */
  readonly #unwritten = new Set<Unwritten>();
  /** Several nodes: entries untouched this long belong to a member gone past its grace period. */
  readonly #claimIdleMs: number;

  constructor(private readonly opts: SharedSubscriptionOptions) {
    if (isCluster(opts.store)) this.#cluster = opts.store;
    this.#store = opts.store as GroupStore;
    // Renewals of what members hold go out several times per grace period, so a busy turn or two
    // does not let another node claim what a member connected here still holds.
    this.#claimIdleMs = Math.max(opts.graceMs, 400);
  }

  /** Loads members and each queue's count (not its entries), then follows the broker's clients. */
  start(broker: Aedes): void {
    if (this.#cluster) return this.#startCluster(broker, this.#cluster);
    const stored = this.#store.groups();
    for (const share of this.opts.declared ?? []) this.#queueOf(share)!.declared = true;
    for (const { clientId, topic, qos } of this.opts.persistence.subscriptionsWithPrefix(SHARE_PREFIX)) {
      this.#join(topic, clientId, qos);
    }
    let messages = 0;
    for (const [share, n] of stored) {
      const queue = this.#queues.get(share);
      if (!queue) {
        // A queue whose every member left, and not declared (any more): nobody will ever read it.
        if (n > 0) this.opts.log.warn({ share, messages: n }, 'group queue dropped: it has no member and BROKER_GROUPS does not declare it');
        this.#store.drop(share);
        continue;
      }
      messages += n;
    }
    if (messages > 0) this.opts.log.info({ groups: this.#queues.size, messages }, 'group queues opened; their entries stay on disk until members make room');
    this.#follow(broker);
  }

  /** Members joining, leaving, connecting and disconnecting, from the broker's events. */
  #follow(broker: Aedes) {
    broker.on('subscribe', (subs, client) => {
      for (const s of subs) {
        if (s.topic.startsWith(SHARE_PREFIX) && (s.qos as number) !== 128) {
          this.#join(s.topic, client.id, s.qos);
          this.opts.log.info({ clientId: client.id, share: s.topic }, 'member joined shared subscription');
        }
      }
      if (this.#online.get(client.id) === client) this.#dispatchFor(client.id);
    });
    broker.on('unsubscribe', (topics, client) => {
      if (client.closed) return;
      for (const t of topics) if (t.startsWith(SHARE_PREFIX)) this.#leave(t, client.id, 'unsubscribed');
    });
    broker.on('clientReady', (client) => this.#connected(client));
    broker.on('clientDisconnect', (client) => this.#disconnected(client));
  }

  stop(): void {
    // What members have not acknowledged yet is kept for the next start.
    for (const batch of [...this.#unwritten]) this.#write(batch);
    for (const t of this.#timers) clearInterval(t);
    for (const t of this.#graceTimers.values()) clearTimeout(t);
    this.#graceTimers.clear();
  }

  /** Several nodes share the group queues (admit must then run before a member's SUBACK). */
  get clustered(): boolean {
    return this.#cluster !== undefined;
  }

  /**
   * Several nodes: makes the client a member in the store before its SUBACK, so that publishes on
   * any node from then on reach the group. One node: nothing to do (the persistence keeps members).
   */
  async admit(client: Client, topic: string): Promise<void> {
    await this.#cluster?.join(topic, client.id);
  }

  /** authorizeSubscribe refused `topic` to `client`: if it names a group, the client is no member of it. */
  leaveRefused(client: Client, topic: string): void {
    if (topic.startsWith(SHARE_PREFIX)) this.#leave(topic, client.id, 'subscription refused');
  }

  /** Why a subscription to a `$share/` filter must be refused, or undefined to accept it. */
  refusal(client: Client, topic: string): string | undefined {
    const parsed = parseShare(topic);
    if (typeof parsed === 'string') return parsed;
    if (client.clean) return 'shared-subscription members need a persistent session (connect with clean=false and a stable client id)';
    return undefined;
  }

  /** The entries a publish adds to the group queues it matches (encoded once for all of them). */
  stage(packet: StoredPacket): NewEntry[] | undefined {
    let staged: NewEntry[] | undefined;
    let encoded: Buffer | undefined;
    const topic = packet.topic ?? '';
    if (this.#cluster) {
      // Groups on other nodes are unknown here: the store matches every publish.
      if (topic.startsWith('$SYS/')) return undefined; // Aedes's own (heartbeats, subscription broadcasts)
      return [{ share: '', topic, packet: encodePublish(topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload ?? ''), packet.qos ? 1 : 0) }];
    }
    for (const queue of this.#queues.values()) {
      if (!queue.matches(topic)) continue;
      encoded ??= encodePublish(topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload ?? ''), packet.qos ? 1 : 0);
      (staged ??= []).push({ share: queue.share, packet: encoded });
    }
    return staged;
  }

  /** Adds staged entries to the store; resolves once they are durable, then hands them out. */
  async append(staged: readonly NewEntry[]): Promise<void> {
    if (this.#cluster) {
      const routed = await this.#cluster.route(staged.map((e) => ({ topic: e.topic ?? '', packet: e.packet })));
      this.#appended(routed.flat());
      return;
    }
    let batch: Unwritten | undefined;
    const toStore: Array<{ queue: GroupQueue; entry: NewEntry; intoMemory: boolean }> = [];
    for (const entry of staged) {
      const queue = this.#queues.get(entry.share);
      if (!queue) continue; // its last member left meanwhile: the store dropped its queue
      // Into memory while nothing older waits in the store and the window has room.
      const fits = queue.backlog.length < this.opts.memory.messages && queue.backlog.bytes < this.opts.memory.bytes;
      const intoMemory = queue.unread === 0 && !queue.reading && fits;
      queue.total++;
      if (intoMemory && this.#writesBehind(queue)) {
        batch ??= this.#openBatch();
        const held: Entry = { id: 0, packet: entry.packet, unwritten: batch };
        batch.entries.push([queue, held]);
        batch.left++;
        queue.backlog.push(held);
        this.#dispatch(queue);
      } else toStore.push({ queue, entry, intoMemory });
    }
    if (toStore.length === 0) return batch?.settled;
    // Ids follow the order of publishes within a group: what of these groups waits to be written goes first.
    const queues = new Set(toStore.map((s) => s.queue));
    for (const open of [...this.#unwritten]) if (open.entries.some(([queue, held]) => held.unwritten && queues.has(queue))) this.#write(open);
    const { stored, durable } = this.#store.append(toStore.map((s) => s.entry));
    for (const { queue } of toStore) queue.written++;
    // Committed in this turn (Ingest flushes the commit at once): into memory before any read of
    // the store could take them a second time.
    await durable;
    toStore.forEach(({ queue, intoMemory }, i) => {
      if (this.#queues.get(queue.share) !== queue) return;
      if (intoMemory) {
        queue.backlog.push(stored[i]!);
        queue.cursor = stored[i]!.id;
      }
      this.#dispatch(queue);
    });
    await batch?.settled;
  }

  /** Write-behind applies while a member is online to acknowledge soon. */
  #writesBehind(queue: GroupQueue): boolean {
    if (!this.opts.writeBehindMs) return false;
    for (const id of queue.members.keys()) if (this.#online.has(id)) return true;
    return false;
  }

  #openBatch(): Unwritten {
    const batch = new Unwritten();
    this.#unwritten.add(batch);
    batch.timer = setTimeout(() => this.#write(batch), this.opts.writeBehindMs);
    return batch;
  }

  /** Writes what a write-behind batch still has unacknowledged; the batch settles once that is durable. */
  #write(batch: Unwritten): void {
    this.#unwritten.delete(batch);
    clearTimeout(batch.timer);
    const pending: Array<[GroupQueue, Entry]> = [];
    for (const [queue, entry] of batch.entries) {
      if (!entry.unwritten) continue; // acknowledged meanwhile
      entry.unwritten = undefined;
      if (this.#queues.get(queue.share) === queue) pending.push([queue, entry]); // else its shared subscription ended
    }
    batch.entries.length = 0;
    if (pending.length === 0) return batch.resolve();
    const { stored, durable } = this.#store.append(pending.map(([queue, entry]) => ({ share: queue.share, packet: entry.packet })));
    pending.forEach(([queue, entry], i) => {
      entry.id = stored[i]!.id;
      queue.written++;
      // It is in memory (waiting or in flight): the next read from the store starts after it.
      if (queue.cursor === undefined || Number(entry.id) > Number(queue.cursor)) queue.cursor = entry.id;
    });
    durable.then(batch.resolve, batch.reject);
  }

  /** A PUBACK from a member: true when it acknowledged one of our messages. */
  acknowledge(clientId: string, messageId: number | undefined): boolean {
    if (messageId === undefined) return false;
    const byId = this.#inflightByClient.get(clientId);
    const queue = byId?.get(messageId);
    if (!queue) return false;
    byId!.delete(messageId);
    const member = queue.members.get(clientId);
    const entry = member?.inflight.get(messageId);
    member?.inflight.delete(messageId);
    if (entry) this.#done(queue, entry);
    this.#dispatch(queue);
    return true;
  }

  /** Whether some group is being read from the store for online members (a backlog draining). */
  get draining(): boolean {
    if (this.#cluster) return false; // nothing in SQLite
    for (const q of this.#queues.values()) {
      if (q.unread > 0 && [...q.members.keys()].some((id) => this.#online.has(id))) return true;
    }
    return false;
  }

  /** Per shared subscription: queued, in memory, in flight, handed to another member after a departure. */
  get stats() {
    return [...this.#queues.values()].map((q) => {
      const inflight = q.inflight;
      return {
        share: q.share,
        depth: this.#cluster ? Math.max(0, q.total - q.held) : q.total - inflight,
        inMemory: q.backlog.length,
        inMemoryBytes: q.backlog.bytes,
        inflight,
        members: q.members.size,
        online: [...q.members.keys()].filter((id) => this.#online.has(id)).length,
        redispatched: q.redispatched,
        delivered: q.delivered,
        written: q.written,
        neverWritten: q.neverWritten,
      };
    });
  }

  // --- membership -----------------------------------------------------------------------

  /** The shared subscription's queue, opened if need be (undefined for a malformed share). */
  #queueOf(share: string): GroupQueue | undefined {
    const parsed = parseShare(share);
    if (typeof parsed === 'string') return undefined;
    let queue = this.#queues.get(share);
    if (!queue) {
      this.#queues.set(share, (queue = new GroupQueue(share, parsed.filter)));
      // Several nodes: the store made the group with its first member (admit); its depth comes with the next refresh.
      if (!this.#cluster) queue.total = this.#store.open(share);
    }
    return queue;
  }

  #join(share: string, clientId: string, qos: number) {
    const queue = this.#queueOf(share);
    if (!queue) return;
    const member = queue.members.get(clientId);
    if (member) member.qos = qos;
    else queue.members.set(clientId, { clientId, qos, inflight: new Map(), assigned: 0 });
    queue.membersChanged();
  }

  #leave(share: string, clientId: string, why: string) {
    const queue = this.#queues.get(share);
    const member = queue?.members.get(clientId);
    if (!queue || !member) return;
    queue.members.delete(clientId);
    queue.membersChanged();
    if (this.#cluster) {
      // The store hands what it held to the other members, on every node.
      this.#forget(queue, member);
      this.#cluster.leave(share, clientId).catch((err: unknown) => this.opts.log.error({ err, clientId, share }, 'could not leave the group in the store'));
      if (queue.members.size === 0) this.#queues.delete(share);
      this.opts.log.info({ clientId, share, why }, 'member left shared subscription');
      return;
    }
    this.#requeue(queue, member);
    this.opts.log.info({ clientId, share, why }, 'member left shared subscription');
    // A declared one keeps its queue for the next member.
    if (queue.members.size === 0 && !queue.declared) {
      // The shared subscription ends with its last member, and so does its queue.
      this.#queues.delete(share);
      this.#forgetPasses(queue);
      queue.backlog.clear();
      this.#store.drop(share);
      return;
    }
    this.#dispatch(queue);
  }

  #connected(client: Client) {
    const id = client.id;
    if (this.#cluster) {
      this.#connectedCluster(client, this.#cluster).catch((err: unknown) => this.opts.log.error({ err, clientId: id }, 'could not restore the memberships of a client'));
      return;
    }
    if (client.clean) {
      // A clean session discards the old one, memberships included.
      for (const q of [...this.#queues.values()]) if (q.members.has(id)) this.#leave(q.share, id, 'clean session');
      return;
    }
    this.#online.set(id, client);
    const timer = this.#graceTimers.get(id);
    if (timer) {
      clearTimeout(timer);
      this.#graceTimers.delete(id);
    }
    // Messages it held when it left are its own again: send them once more on this connection.
    const old = this.#inflightByClient.get(id);
    this.#inflightByClient.delete(id);
    if (old) {
      for (const queue of new Set(old.values())) {
        const member = queue.members.get(id);
        if (!member) continue;
        const entries = [...member.inflight.values()];
        member.inflight.clear();
        this.#send(client, queue, member, entries, true);
      }
    }
    this.#dispatchFor(id);
  }

  #disconnected(client: Client) {
    const id = client.id;
    if (this.#online.get(id) !== client) return;
    this.#online.delete(id);
    if (!this.#inflightByClient.get(id)?.size) return;
    const timer = setTimeout(() => {
      this.#graceTimers.delete(id);
      if (this.#online.has(id)) return;
      if (this.#cluster) return this.#departedCluster(id);
      const byId = this.#inflightByClient.get(id);
      this.#inflightByClient.delete(id);
      for (const queue of new Set(byId?.values() ?? [])) {
        const member = queue.members.get(id);
        if (!member) continue;
        const n = member.inflight.size;
        this.#requeue(queue, member);
        queue.redispatched += n;
        this.opts.log.warn({ clientId: id, share: queue.share, messages: n }, 'member gone past its grace period; its messages go to other members');
        this.#dispatch(queue);
      }
    }, this.opts.graceMs);
    timer.unref();
    this.#graceTimers.set(id, timer);
  }

  /** Puts a member's unacknowledged messages back at the head of its queue's window. */
  #requeue(queue: GroupQueue, member: Member) {
    const byId = this.#inflightByClient.get(member.clientId);
    for (const messageId of member.inflight.keys()) byId?.delete(messageId);
    if (member.inflight.size > 0) queue.backlog.unshift([...member.inflight.values()]);
    member.inflight.clear();
  }

  // --- dispatch ---------------------------------------------------------------------------

  #dispatchFor(clientId: string) {
    for (const q of this.#queues.values()) if (q.members.has(clientId)) this.#dispatch(q);
  }

  /**
   * Hands out what the queue has for members with room, in the next pass. `soon` (a socket read's
   * PUBACKs, a commit's entries): once what runs now is done, so that the deliveries leave in this
   * turn's writes; a pass at the next turn (setImmediate) held each freed window a turn longer, and
   * the clients of `bench:broker` waited on the broker a fifth of the time against a seventh now.
   * At most SOON_PASSES such passes a turn, and what a read from the store brings waits for the
   * next turn: a member at QoS 0 frees its window as it is written, and pass, read and pass again
   * would otherwise send a whole stored backlog without the event loop turning once.
   */
  #dispatch(queue: GroupQueue, soon = true) {
    // Joins the pass of its kind already asked for; a soon one only while this turn has room for one.
    const kind = soon && (this.#passes.soon.scheduled || this.#soonPasses < SOON_PASSES) ? 'soon' : 'later';
    const pass = this.#passes[kind];
    pass.dirty.add(queue);
    if (pass.scheduled) return;
    pass.scheduled = true;
    const run = () => {
      pass.scheduled = false;
      const queues = [...pass.dirty];
      pass.dirty.clear();
      for (const q of queues) this.#handOut(q);
    };
    if (kind === 'later') return void setImmediate(run);
    if (this.#soonPasses++ === 0) setImmediate(() => (this.#soonPasses = 0));
    process.nextTick(run);
  }

  /** A queue that ended: no pass hands it out. */
  #forgetPasses(queue: GroupQueue) {
    this.#passes.soon.dirty.delete(queue);
    this.#passes.later.dirty.delete(queue);
  }

  #handOut(queue: GroupQueue) {
    if (this.#cluster) return this.#readFor(queue, this.#cluster);
    // Rounds until every member's window is full or the window is empty (QoS 0 deliveries leave
    // nothing in flight, so a round may free the room it used).
    while (queue.backlog.length > 0) {
      const batches = new Map<Member, Entry[]>();
      for (let member = queue.nextReady(this.opts.window, this.#online); member && queue.backlog.length > 0; member = queue.nextReady(this.opts.window, this.#online)) {
        let batch = batches.get(member);
        if (!batch) batches.set(member, (batch = []));
        batch.push(queue.backlog.shift()!);
        member.assigned++;
      }
      if (batches.size === 0) break;
      for (const [member, entries] of batches) {
        member.assigned = 0;
        this.#send(this.#online.get(member.clientId)!, queue, member, entries, false);
      }
    }
    this.#refill(queue);
  }

  /** Reads the next entries from the store once the window is half empty. */
  #refill(queue: GroupQueue) {
    const { messages, bytes } = this.opts.memory;
    if (queue.reading || queue.unread <= 0 || queue.backlog.length > messages / 2 || queue.backlog.bytes > bytes / 2) return;
    if (![...queue.members.keys()].some((id) => this.#online.has(id))) return;
    queue.reading = true;
    const limit = Math.min(messages - queue.backlog.length, queue.unread);
    const share = queue.share;
    this.#store
      .claim(share, limit)
      .then(async (claimed) => [...claimed, ...(await this.#store.read(share, queue.cursor, limit - claimed.length))])
      .then(
        (entries) => {
          queue.reading = false;
          if (this.#queues.get(share) !== queue) return;
          for (const e of entries) queue.backlog.push(e);
          if (entries.length > 0) queue.cursor = entries.at(-1)!.id;
          this.#dispatch(queue, false);
        },
        (err: unknown) => {
          queue.reading = false;
          this.opts.log.error({ err, share }, 'could not read the group queue; will try again');
          setTimeout(() => this.#dispatch(queue), 1000).unref();
        },
      );
  }

  /** Sends entries to a member in one write, each with a fresh packet identifier. */
  #send(client: Client, queue: GroupQueue, member: Member, entries: Entry[], dup: boolean) {
    queue.delivered += entries.length;
    let byId = this.#inflightByClient.get(client.id);
    let size = 0;
    const qos1: Entry[] = [];
    for (const entry of entries) {
      if (member.qos === 0 || qosOf(entry.packet) === 0) {
        // Nothing to acknowledge: done once written.
        writePackets(client, member.qos === 0 && qosOf(entry.packet) === 1 ? asQos0(entry.packet) : entry.packet);
        this.#done(queue, entry);
        continue;
      }
      qos1.push(entry);
      size += entry.packet.length;
    }
    if (qos1.length === 0) return;
    if (!byId) this.#inflightByClient.set(client.id, (byId = new Map()));
    const out = Buffer.allocUnsafe(size);
    let at = 0;
    for (const entry of qos1) {
      const messageId = nextPacketId(client, byId);
      member.inflight.set(messageId, entry);
      byId.set(messageId, queue);
      at = stampPublish(out, at, entry.packet, messageId, dup);
    }
    writePackets(client, out);
  }

  /** An entry is delivered for good (acknowledged, or sent with QoS 0): out of the queue and the store. */
  #done(queue: GroupQueue, entry: Entry) {
    if (this.#cluster) return this.#cluster.ack(queue.share, [entry.id]);
    queue.total--;
    const batch = entry.unwritten;
    if (!batch) return this.#store.ack(queue.share, [entry.id]);
    // Acknowledged before it had to be written: it never will be.
    entry.unwritten = undefined;
    queue.neverWritten++;
    if (--batch.left === 0) {
      this.#unwritten.delete(batch);
      clearTimeout(batch.timer);
      batch.resolve();
    }
  }

  // --- several nodes ----------------------------------------------------------------------

  /**
   * Several nodes: sets the declared groups in the store (this node's view holds only groups with
   * members here), before any client connects. One node: start() has opened them.
   */
  async declare(): Promise<void> {
    if (!this.#cluster) return;
    for (const { share, messages } of await this.#cluster.declare(this.opts.declared ?? [])) {
      this.opts.log.warn({ share, messages }, 'group queue dropped: it has no member and BROKER_GROUPS does not declare it any more');
    }
  }

  #startCluster(broker: Aedes, cluster: ClusterGroupStore) {
    // Members join in the store before their SUBACK (admit); the events make this node's view.
    this.#follow(broker);
    cluster.onAppended((shares) => this.#appended(shares));
    const every = (ms: number, run: () => void) => {
      const t = setInterval(run, ms);
      t.unref();
      this.#timers.push(t);
    };
    every(Math.max(50, Math.floor(this.#claimIdleMs / 4)), () => this.#keepHeld(cluster));
    every(Math.max(100, Math.floor(this.#claimIdleMs / 2)), () => {
      for (const q of this.#queues.values()) {
        q.claimDue = true;
        this.#dispatch(q);
      }
    });
    every(1000, () => {
      for (const q of this.#queues.values()) {
        cluster.depth(q.share).then(
          ({ stored, held }) => {
            q.total = stored;
            q.held = held;
          },
          () => {},
        );
      }
    });
  }

  /** Entries went to these groups (on any node): read them for members here with room. */
  #appended(shares: Iterable<string>) {
    for (const share of shares) {
      const queue = this.#queues.get(share);
      if (!queue) continue;
      queue.more = true;
      queue.notices++;
      this.#dispatch(queue);
    }
  }

  async #connectedCluster(client: Client, cluster: ClusterGroupStore) {
    const id = client.id;
    const shares = await cluster.memberships(id);
    if (client.clean) {
      // A clean session discards the old one, memberships included, whichever node held them.
      for (const share of shares) {
        if (this.#queues.get(share)?.members.has(id)) this.#leave(share, id, 'clean session');
        else await cluster.leave(share, id);
      }
      return;
    }
    if (client.closed) return;
    for (const share of shares) {
      const queue = this.#queues.get(share);
      this.#join(share, id, queue?.members.get(id)?.qos ?? 1);
    }
    this.#online.set(id, client);
    const timer = this.#graceTimers.get(id);
    if (timer) {
      clearTimeout(timer);
      this.#graceTimers.delete(id);
    }
    // What it held when it left (here or on another node), unless claimed meanwhile: once more on this connection.
    this.#inflightByClient.delete(id);
    for (const share of shares) {
      const queue = this.#queues.get(share);
      const member = queue?.members.get(id);
      if (!queue || !member) continue;
      member.inflight.clear();
      member.reading = true;
      try {
        const entries = await cluster.held(share, id);
        if (this.#online.get(id) === client && entries.length > 0) this.#send(client, queue, member, entries, true);
      } finally {
        member.reading = false;
      }
    }
    this.#dispatchFor(id);
  }

  /** Past its grace period: what the member held here is no longer this node's to send (the store lets any node claim it). */
  #departedCluster(id: string) {
    this.#inflightByClient.delete(id);
    for (const queue of [...this.#queues.values()]) {
      const member = queue.members.get(id);
      if (!member) continue;
      const n = member.inflight.size;
      // Counted as re-dispatched by the node that claims them.
      if (n > 0) this.opts.log.warn({ clientId: id, share: queue.share, messages: n }, 'member gone past its grace period; its messages go to other members');
      // Its membership stays in the store: it may come back, here or on another node.
      queue.members.delete(id);
      queue.membersChanged();
      if (queue.members.size === 0) {
        this.#queues.delete(queue.share);
        this.#forgetPasses(queue);
      }
    }
  }

  /** Drops what a member holds from this node's memory (the store still has it). */
  #forget(queue: GroupQueue, member: Member) {
    const byId = this.#inflightByClient.get(member.clientId);
    for (const messageId of member.inflight.keys()) byId?.delete(messageId);
    member.inflight.clear();
  }

  /** Reads, for each member here with room, what it may take: entries of departed members first when due, then new ones. */
  #readFor(queue: GroupQueue, cluster: ClusterGroupStore) {
    // The periodic claim also looks for new entries: a notice lost while Redis was away is made up for.
    const claim = queue.claimDue;
    queue.claimDue = false;
    if (!claim && !queue.more) return;
    const notices = queue.notices;
    for (const member of queue.members.values()) {
      const client = this.#online.get(member.clientId);
      const room = this.opts.window - member.inflight.size;
      if (!client || member.reading || room <= 0) continue;
      member.reading = true;
      const share = queue.share;
      void (async () => {
        const claimed = claim ? await cluster.claim(share, member.clientId, this.#claimIdleMs, room) : [];
        const taken = claimed.length < room ? await cluster.take(share, member.clientId, room - claimed.length) : [];
        return { claimed, taken };
      })().then(
        ({ claimed, taken }) => {
          member.reading = false;
          if (taken.length < room - claimed.length && queue.notices === notices) queue.more = false;
          if (claimed.length > 0) queue.redispatched += claimed.length;
          const entries = [...claimed, ...taken];
          // Gone meanwhile: the entries wait in the store, held by the member (held() or a claim gets them back).
          if (entries.length > 0 && this.#online.get(member.clientId) === client && queue.members.get(member.clientId) === member) {
            this.#send(client, queue, member, entries, false);
          }
          // More to read, or a notice that came while this read was under way.
          if (entries.length > 0 || queue.notices !== notices) this.#dispatch(queue);
        },
        (err: unknown) => {
          member.reading = false;
          this.opts.log.error({ err, share }, 'could not read the group queue; will try again');
          setTimeout(() => {
            queue.more = true;
            this.#dispatch(queue);
          }, 1000).unref();
        },
      );
    }
  }

  /** Renews what members connected here hold, so that no other node claims it. */
  #keepHeld(cluster: ClusterGroupStore) {
    for (const queue of this.#queues.values()) {
      for (const member of queue.members.values()) {
        if (member.inflight.size === 0 || !this.#online.has(member.clientId)) continue;
        const ids = [...member.inflight.values()].map((e) => e.id);
        cluster.keep(queue.share, member.clientId, ids).then(
          () => (this.#keepFailing = false),
          (err: unknown) => {
            // Once per outage, not several times a second per member.
            if (!this.#keepFailing) this.opts.log.warn({ err, share: queue.share }, 'could not renew held entries (other nodes may claim them)');
            this.#keepFailing = true;
          },
        );
      }
    }
  }
}
