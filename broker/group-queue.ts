// Shared subscriptions ($share/{group}/{filter}) on top of Aedes, which has none: Aedes keeps the
// subscription as a literal filter that no publish matches, and this file does the rest. Each shared
// subscription has a durable queue (SQLite, one row per message until a member acknowledges it);
// messages go round-robin to online members whose in-flight window has room, so a slow member holds
// at most `window` messages and the backlog stays here. A member that leaves with unacknowledged
// messages gets them back if it returns within the grace period; otherwise they go to another member.
import type { Aedes, Client } from 'aedes';
import type { DB } from '../lib/db.js';
import type { Logger } from '../lib/log.js';
import { topicMatches } from '../lib/events.js';
import type { CommitQueue } from './commit-queue.js';
import type { SqlitePersistence, StoredPacket } from './persistence.js';
import { encodePublish } from './wire.js';

export const SHARE_PREFIX = '$share/';

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

interface Entry {
  id: number;
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
}

interface Member {
  clientId: string;
  qos: number;
  /** packet identifier (on the member's current connection) → message */
  inflight: Map<number, Entry>;
}

/** A first-in first-out list with O(1) removal at the head. */
class Backlog {
  #items: Entry[] = [];
  #head = 0;
  get length() {
    return this.#items.length - this.#head;
  }
  push(e: Entry) {
    this.#items.push(e);
  }
  shift(): Entry | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const e = this.#items[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return e;
  }
  /** Puts messages back in front, oldest first. */
  unshift(entries: Entry[]) {
    this.#items = [...entries.sort((a, b) => a.id - b.id), ...this.#items.slice(this.#head)];
    this.#head = 0;
  }
  clear() {
    this.#items = [];
    this.#head = 0;
  }
}

/** One shared subscription: its members and its queue. */
class GroupQueue {
  readonly backlog = new Backlog();
  readonly members = new Map<string, Member>();
  #turn = 0;
  /** members in turn order; rebuilt after a change */
  #list: Member[] | undefined;

  membersChanged() {
    this.#list = undefined;
  }
  redispatched = 0;
  delivered = 0;

  constructor(
    readonly share: string,
    readonly filter: string,
  ) {}

  readonly #matches = new Map<string, boolean>();

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

  /** The next member, in turn, that is online and has room in its window. */
  nextReady(window: number, online: Map<string, Client>): Member | undefined {
    const list = (this.#list ??= [...this.members.values()]);
    for (let i = 0; i < list.length; i++) {
      const m = list[(this.#turn + i) % list.length]!;
      if (m.inflight.size < window && online.has(m.clientId)) {
        this.#turn = (this.#turn + i + 1) % list.length;
        return m;
      }
    }
    return undefined;
  }
}

export interface SharedSubscriptionOptions {
  db: DB;
  commits: CommitQueue;
  persistence: SqlitePersistence;
  log: Logger;
  /** Messages a member may hold unacknowledged (1–4). */
  window: number;
  /** How long a departed member's unacknowledged messages wait for it before going to another member. */
  graceMs: number;
}

export class SharedSubscriptions {
  readonly #queues = new Map<string, GroupQueue>();
  readonly #online = new Map<string, Client>();
  readonly #graceTimers = new Map<string, NodeJS.Timeout>();
  /** clientId → packet identifier → the queue holding that in-flight message */
  readonly #inflightByClient = new Map<string, Map<number, GroupQueue>>();
  #nextId = 1;
  /** delivered and acknowledged, to be deleted */
  #done: number[] = [];
  readonly #sql;

  constructor(private readonly opts: SharedSubscriptionOptions) {
    const { db } = opts;
    this.#sql = {
      put: db.prepare('INSERT INTO shared_messages (id, share, packet, payload) VALUES (?, ?, ?, ?)'),
      del: db.prepare('DELETE FROM shared_messages WHERE id = ?'),
      delShare: db.prepare('DELETE FROM shared_messages WHERE share = ?'),
    };
  }

  /** Loads members and queued messages, then follows the broker's clients. */
  start(broker: Aedes): void {
    for (const { clientId, topic, qos } of this.opts.persistence.subscriptionsWithPrefix(SHARE_PREFIX)) {
      this.#join(topic, clientId, qos);
    }
    const rows = this.opts.db.prepare('SELECT id, share, packet, payload FROM shared_messages ORDER BY id').all() as Array<{
      id: number;
      share: string;
      packet: string;
      payload: Buffer | null;
    }>;
    for (const r of rows) {
      this.#nextId = Math.max(this.#nextId, r.id + 1);
      const queue = this.#queues.get(r.share);
      if (!queue) {
        this.opts.commits.queue(() => this.#sql.del.run(r.id));
        continue;
      }
      const { topic, qos } = JSON.parse(r.packet) as { topic: string; qos: 0 | 1 };
      queue.backlog.push({ id: r.id, topic, qos, payload: r.payload ?? Buffer.alloc(0) });
    }
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
    for (const t of this.#graceTimers.values()) clearTimeout(t);
    this.#graceTimers.clear();
  }

  /** Why a subscription to a `$share/` filter must be refused, or undefined to accept it. */
  refusal(client: Client, topic: string): string | undefined {
    const parsed = parseShare(topic);
    if (typeof parsed === 'string') return parsed;
    if (client.clean) return 'shared-subscription members need a persistent session (connect with clean=false and a stable client id)';
    return undefined;
  }

  /**
   * Queues a copy of `packet` for every shared subscription it matches. Runs inside the ingest
   * transaction; returns what to hand out once that transaction has committed.
   */
  store(packet: StoredPacket): Entry[] | undefined {
    let staged: Entry[] | undefined;
    let fields: string | undefined;
    const topic = packet.topic ?? '';
    const qos = packet.qos ? 1 : 0;
    for (const queue of this.#queues.values()) {
      if (!queue.matches(topic)) continue;
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload ?? '');
      const entry: Entry = { id: this.#nextId++, topic, payload, qos };
      this.#sql.put.run(entry.id, queue.share, (fields ??= JSON.stringify({ topic, qos })), payload);
      (staged ??= []).push(Object.assign(entry, { share: queue.share }));
    }
    return staged;
  }

  /** Hands out messages returned by store() after they were committed. */
  release(entries: Entry[]): void {
    const touched = new Set<GroupQueue>();
    for (const e of entries as Array<Entry & { share: string }>) {
      const queue = this.#queues.get(e.share);
      if (!queue) continue; // its last member left meanwhile
      queue.backlog.push(e);
      touched.add(queue);
    }
    for (const q of touched) this.#dispatch(q);
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
    if (entry) this.#forget(entry.id);
    this.#dispatch(queue);
    return true;
  }

  /** Per shared subscription: queued, in flight, handed to another member after a departure. */
  get stats() {
    return [...this.#queues.values()].map((q) => ({
      share: q.share,
      depth: q.backlog.length,
      inflight: q.inflight,
      members: q.members.size,
      online: [...q.members.keys()].filter((id) => this.#online.has(id)).length,
      redispatched: q.redispatched,
      delivered: q.delivered,
    }));
  }

  // --- membership -----------------------------------------------------------------------

  #join(share: string, clientId: string, qos: number) {
    const parsed = parseShare(share);
    if (typeof parsed === 'string') return;
    let queue = this.#queues.get(share);
    if (!queue) this.#queues.set(share, (queue = new GroupQueue(share, parsed.filter)));
    const member = queue.members.get(clientId);
    if (member) member.qos = qos;
    else queue.members.set(clientId, { clientId, qos, inflight: new Map() });
    queue.membersChanged();
  }

  #leave(share: string, clientId: string, why: string) {
    const queue = this.#queues.get(share);
    const member = queue?.members.get(clientId);
    if (!queue || !member) return;
    queue.members.delete(clientId);
    queue.membersChanged();
    this.#requeue(queue, member);
    this.opts.log.info({ clientId, share, why }, 'member left shared subscription');
    if (queue.members.size === 0) {
      // The shared subscription ends with its last member, and so does its queue.
      this.#queues.delete(share);
      queue.backlog.clear();
      this.opts.commits.queue(() => this.#sql.delShare.run(share));
      return;
    }
    this.#dispatch(queue);
  }

  #connected(client: Client) {
    const id = client.id;
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
        for (const e of entries) this.#send(client, queue, member, e, true);
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

  /** Puts a member's unacknowledged messages back at the head of its queue. */
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

  #dispatch(queue: GroupQueue) {
    while (queue.backlog.length > 0) {
      const member = queue.nextReady(this.opts.window, this.#online);
      if (!member) return;
      const entry = queue.backlog.shift()!;
      this.#send(this.#online.get(member.clientId)!, queue, member, entry, false);
    }
  }

  #send(client: Client, queue: GroupQueue, member: Member, entry: Entry, dup: boolean) {
    queue.delivered++;
    const qos = Math.min(entry.qos, member.qos) as 0 | 1;
    if (qos === 0) {
      this.#write(client, encodePublish({ topic: entry.topic, payload: entry.payload, qos }));
      this.#forget(entry.id);
      return;
    }
    const messageId = this.#allocateId(client);
    member.inflight.set(messageId, entry);
    let byId = this.#inflightByClient.get(client.id);
    if (!byId) this.#inflightByClient.set(client.id, (byId = new Map()));
    byId.set(messageId, queue);
    this.#write(client, encodePublish({ topic: entry.topic, payload: entry.payload, qos, messageId, dup }));
  }

  /** Deletes a delivered message's row with the next commit; all such deletes go in one queued write. */
  #forget(id: number) {
    if (this.#done.length === 0) {
      this.opts.commits.queue(() => {
        for (const done of this.#done.splice(0)) this.#sql.del.run(done);
      });
    }
    this.#done.push(id);
  }

  #write(client: Client, packet: Buffer) {
    // A failed write means the connection is going away; the disconnect handling takes over.
    if (client.connected && !client.closed) client.conn.write(packet);
  }

  /** Takes the next packet identifier from the same counter Aedes uses for this connection. */
  #allocateId(client: Client): number {
    const c = client as unknown as { _nextId: number };
    const inUse = this.#inflightByClient.get(client.id);
    for (;;) {
      const id = c._nextId;
      c._nextId = id >= 65535 ? 1 : id + 1;
      if (!inUse?.has(id)) return id;
    }
  }
}
