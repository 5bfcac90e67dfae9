// Aedes session state that survives kill -9: subscriptions, messages queued for persistent
// sessions, QoS 2 incoming packets, wills and retained messages. Reads are served from memory (the
// same shapes as aedes-persistence's memory implementation); every change is also written to SQLite
// through the group-commit queue, and the whole state is loaded back at start.
import { Readable } from 'node:stream';
import QlobberSub from 'qlobber/aedes/qlobber-sub.js';
import type { DB } from '../lib/db.js';
import { topicMatches } from '../lib/events.js';
import type { CommitQueue } from './commit-queue.js';
import { decision } from './granted.js';

/** A packet as Aedes hands it over: publish (or pubrel) fields plus broker bookkeeping. */
export interface StoredPacket {
  cmd?: string;
  topic?: string;
  payload?: Buffer | string;
  qos?: number;
  retain?: boolean;
  dup?: boolean;
  messageId?: number | undefined;
  brokerId?: string;
  brokerCounter?: number;
  [field: string]: unknown;
}

export interface SubscriptionOptions {
  qos: number;
  rh?: number;
  rap?: boolean;
  nl?: boolean;
  subscriptionIdentifier?: number;
}

interface ClientRef {
  id: string;
}

interface Queued {
  rowId: number;
  packet: StoredPacket;
}

/** Splits a packet into its JSON fields and its payload, for one row. */
function toRow(packet: StoredPacket): [string, Buffer | string | null] {
  const { payload, ...fields } = packet;
  return [JSON.stringify(fields), payload ?? null];
}

function fromRow(json: string, payload: Buffer | string | null): StoredPacket {
  const packet = JSON.parse(json) as StoredPacket;
  if (payload !== null) packet.payload = payload;
  return packet;
}

/** The copy put in a queue: a fresh object with no packet identifier yet (as aedes-packet does). */
function queuedCopy(original: StoredPacket): StoredPacket {
  const copy: StoredPacket = {};
  for (const key of ['clientId', 'nl', 'properties', 'messageExpiry'] as const) {
    if (Object.prototype.hasOwnProperty.call(original, key)) copy[key] = original[key];
  }
  copy.cmd = original.cmd ?? 'publish';
  copy.brokerId = original.brokerId;
  copy.brokerCounter = original.brokerCounter ?? 0;
  copy.topic = original.topic;
  copy.payload = original.payload ?? Buffer.alloc(0);
  copy.qos = original.qos ?? 0;
  copy.retain = original.retain ?? false;
  copy.dup = original.dup ?? false;
  if (copy.qos > 0 || copy.cmd !== 'publish') copy.messageId = undefined;
  return copy;
}

const isEmpty = (payload: Buffer | string | undefined) => payload === undefined || payload.length === 0;

/** What the broker needs of its session persistence beyond Aedes's interface (SQLite here, Redis in redis-persistence.ts). */
export interface SessionPersistence {
  /** Would a publish on `topic` be queued for some persistent session? (durable ingest keeps it then) */
  hasSessionSubscriber(topic: string): boolean;
  /** Drops filters from a client's stored session (Aedes's own interface). */
  removeSubscriptions(client: { id: string }, topics: string[]): Promise<void>;
  /** Persistent subscriptions whose filter starts with `prefix`. */
  subscriptionsWithPrefix(prefix: string): Array<{ clientId: string; topic: string; qos: number }>;
  /** Set by the shared subscriptions: takes the PUBACKs of the messages they sent themselves. */
  claimAck: ((clientId: string, messageId: number | undefined) => boolean) | undefined;
  /**
   * Set by main.ts from the ACL: may a message on `topic` wait in `clientId`'s session? Aedes queues
   * for a persistent session every message its filters match and leaves the ACL to the delivery
   * (authorizeForward), so a viewer's offline sessions subscribed to `#` kept every order, names
   * and e-mails included, until it came back. Unset: everything.
   */
  mayQueue: ((clientId: string, topic: string) => boolean) | undefined;
  /** Messages queued for persistent sessions, for metrics (undefined where not known without a scan). */
  readonly outgoingDepth: number | undefined;
}

export class SqlitePersistence implements SessionPersistence {
  #broker: { id: string } | undefined;
  readonly #retained = new Map<string, StoredPacket>();
  /** clientId → topic filter → options */
  readonly #subscriptions = new Map<string, Map<string, SubscriptionOptions>>();
  /** Per SUBSCRIBE list (addSubscriptions sees each once per granted filter): its client, and the entries already kept. */
  readonly #kept = new WeakMap<object, { clientId: string; subs: WeakSet<object> }>();
  /**
   * The QoS>0 subscriptions in a topic trie (qlobber, as Aedes's own stores): a publish is matched
   * in time that grows with the topic's levels, not with the number of subscriptions. A linear scan
   * had made every publish on a new topic cost 28 ms once one viewer session held 20,000 filters.
   */
  readonly #trie = new QlobberSub({ separator: '/', wildcard_one: '+', wildcard_some: '#', match_empty_levels: true });
  /** topic → matching QoS>0 subscriptions; cleared whenever a subscription changes. */
  #byTopic = new Map<string, Array<{ clientId: string; topic: string } & SubscriptionOptions>>();
  readonly #outgoing = new Map<string, Queued[]>();
  readonly #incoming = new Map<string, Map<number, StoredPacket>>();
  readonly #wills = new Map<string, StoredPacket>();
  #nextRowId = 1;
  readonly #sql;

  constructor(
    private readonly db: DB,
    private readonly commits: CommitQueue,
  ) {
    this.#sql = {
      putRetained: db.prepare('INSERT OR REPLACE INTO retained (topic, packet, payload) VALUES (?, ?, ?)'),
      delRetained: db.prepare('DELETE FROM retained WHERE topic = ?'),
      putSub: db.prepare('INSERT OR REPLACE INTO subscriptions (client_id, topic, options) VALUES (?, ?, ?)'),
      delSub: db.prepare('DELETE FROM subscriptions WHERE client_id = ? AND topic = ?'),
      delSubs: db.prepare('DELETE FROM subscriptions WHERE client_id = ?'),
      putOut: db.prepare('INSERT INTO outgoing (id, client_id, packet, payload) VALUES (?, ?, ?, ?)'),
      setOut: db.prepare('UPDATE outgoing SET packet = ?, payload = ? WHERE id = ?'),
      delOut: db.prepare('DELETE FROM outgoing WHERE id = ?'),
      putIn: db.prepare('INSERT OR REPLACE INTO incoming (client_id, message_id, packet, payload) VALUES (?, ?, ?, ?)'),
      delIn: db.prepare('DELETE FROM incoming WHERE client_id = ? AND message_id = ?'),
      delIns: db.prepare('DELETE FROM incoming WHERE client_id = ?'),
      putWill: db.prepare('INSERT OR REPLACE INTO wills (client_id, packet, payload) VALUES (?, ?, ?)'),
      delWill: db.prepare('DELETE FROM wills WHERE client_id = ?'),
      putAway: db.prepare('INSERT OR REPLACE INTO session_away (client_id, since) VALUES (?, ?)'),
      delAway: db.prepare('DELETE FROM session_away WHERE client_id = ?'),
    };
  }

  get broker() {
    return this.#broker;
  }

  /** Loads the stored state; Aedes calls it once, and insists it be an async function. */
  async setup(broker: { id: string }): Promise<void> {
    this.#broker = broker;
    type Row = { packet: string; payload: Buffer | string | null };
    for (const r of this.db.prepare<[], Row & { topic: string }>('SELECT topic, packet, payload FROM retained').all()) {
      this.#retained.set(r.topic, fromRow(r.packet, r.payload));
    }
    for (const r of this.db.prepare<[], { client_id: string; topic: string; options: string }>('SELECT client_id, topic, options FROM subscriptions').all()) {
      this.#subscribe(r.client_id, r.topic, JSON.parse(r.options) as SubscriptionOptions);
    }
    for (const r of this.db.prepare<[], Row & { id: number; client_id: string }>('SELECT id, client_id, packet, payload FROM outgoing ORDER BY id').all()) {
      const packet = fromRow(r.packet, r.payload);
      // Packet identifiers belonged to connections that no longer exist.
      if (packet.cmd === 'publish') packet.messageId = undefined;
      this.#queue(r.client_id).push({ rowId: r.id, packet });
      this.#nextRowId = Math.max(this.#nextRowId, r.id + 1);
    }
    for (const r of this.db.prepare<[], Row & { client_id: string; message_id: number }>('SELECT client_id, message_id, packet, payload FROM incoming').all()) {
      this.#clientIncoming(r.client_id).set(r.message_id, fromRow(r.packet, r.payload));
    }
    for (const r of this.db.prepare<[], Row & { client_id: string }>('SELECT client_id, packet, payload FROM wills').all()) {
      this.#wills.set(r.client_id, fromRow(r.packet, r.payload));
    }
  }

  // --- retained -----------------------------------------------------------------------------

  async storeRetained(packet: StoredPacket): Promise<void> {
    const topic = packet.topic ?? '';
    if (isEmpty(packet.payload)) {
      this.#retained.delete(topic);
      this.commits.queue(() => this.#sql.delRetained.run(topic));
    } else {
      const copy = { ...packet };
      this.#retained.set(topic, copy);
      const [json, payload] = toRow(copy);
      this.commits.queue(() => this.#sql.putRetained.run(topic, json, payload));
    }
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    const retained = this.#retained;
    function* matching() {
      for (const pattern of patterns) {
        for (const [topic, packet] of retained) {
          if (matchesFilter(pattern, topic)) yield packet;
        }
      }
    }
    return Readable.from(matching());
  }

  createRetainedStream(pattern: string): Readable {
    return this.createRetainedStreamCombi([pattern]);
  }

  // --- subscriptions ------------------------------------------------------------------------

  /**
   * Aedes calls this once per granted filter of a SUBSCRIBE, each time with the packet's whole list
   * (broker/granted.ts): each entry is kept once, a refused one never, at the QoS it was granted.
   */
  async addSubscriptions(client: ClientRef, subs: Array<SubscriptionOptions & { topic: string }>): Promise<void> {
    let kept = this.#kept.get(subs);
    if (kept?.clientId !== client.id) this.#kept.set(subs, (kept = { clientId: client.id, subs: new WeakSet() }));
    for (const sub of subs) {
      const decided = decision(sub);
      if (decided === 'refused' || kept.subs.has(sub)) continue;
      kept.subs.add(sub);
      const { topic, rh, rap, nl, subscriptionIdentifier } = sub;
      const options: SubscriptionOptions = { qos: decided ?? sub.qos, rh, rap, nl };
      if (subscriptionIdentifier !== undefined) options.subscriptionIdentifier = subscriptionIdentifier;
      this.#subscribe(client.id, topic, options);
      const json = JSON.stringify(options);
      this.commits.queue(() => this.#sql.putSub.run(client.id, topic, json));
    }
    this.#byTopic = new Map();
    // A SUBACK promises the subscription is kept: wait for the commit.
    await this.commits.write(() => {});
  }

  async removeSubscriptions(client: ClientRef, topics: string[]): Promise<void> {
    const stored = this.#subscriptions.get(client.id);
    if (!stored) return;
    for (const topic of topics) {
      if (!stored.delete(topic)) continue;
      this.#trie.remove(topic, { clientId: client.id, topic });
      this.commits.queue(() => this.#sql.delSub.run(client.id, topic));
    }
    if (stored.size === 0) this.#subscriptions.delete(client.id);
    this.#byTopic = new Map();
    await this.commits.write(() => {});
  }

  async subscriptionsByClient(client: ClientRef) {
    const stored = this.#subscriptions.get(client.id);
    return stored ? [...stored].map(([topic, options]) => ({ topic, ...options })) : [];
  }

  async countOffline() {
    let subsCount = 0;
    for (const subs of this.#subscriptions.values()) {
      for (const s of subs.values()) if (s.qos > 0) subsCount++;
    }
    return { subsCount, clientsCount: this.#subscriptions.size };
  }

  async subscriptionsByTopic(topic: string) {
    return this.#matching(topic);
  }

  #matching(topic: string) {
    let found = this.#byTopic.get(topic);
    if (!found) {
      found = this.#trie.match(topic);
      // A topic starting with $ is matched by no filter starting with a wildcard (MQTT-4.7.2-1).
      if (topic.startsWith('$')) found = found.filter((s) => matchesFilter(s.topic, topic));
      // Multi-level wildcards first, as the memory implementation's trie returns them.
      const rank = (f: string) => (f.includes('#') ? 0 : f.includes('+') ? 1 : 2);
      found.sort((a, b) => rank(a.topic) - rank(b.topic));
      if (this.#byTopic.size > 10_000) this.#byTopic = new Map();
      this.#byTopic.set(topic, found);
    }
    return found;
  }

  /** Would a publish on `topic` be queued for some persistent session (QoS > 0 subscription)? */
  hasSessionSubscriber(topic: string): boolean {
    return this.#matching(topic).length > 0;
  }

  async cleanSubscriptions(client: ClientRef): Promise<void> {
    if (!this.#unsubscribeAll(client.id)) return;
    await this.commits.write(() => this.#sql.delSubs.run(client.id));
  }

  /** Does the store hold anything of `clientId`'s session: subscriptions, queued messages (sent or not), QoS 2 state? */
  holdsSession(clientId: string): boolean {
    return (this.#subscriptions.get(clientId)?.size ?? 0) > 0 || (this.#outgoing.get(clientId)?.length ?? 0) > 0 || (this.#incoming.get(clientId)?.size ?? 0) > 0;
  }

  /**
   * The client ids of the stored sessions (anything held, as holdsSession): those with a time in
   * session_away first, the longest away first; then the others, those with subscriptions first, in
   * the order they were stored or loaded.
   */
  sessionClientIds(): Set<string> {
    const held = new Set([...this.#subscriptions.keys(), ...this.#outgoing.keys(), ...this.#incoming.keys()].filter((id) => this.holdsSession(id)));
    const away = this.db.prepare<[], { client_id: string }>('SELECT client_id FROM session_away ORDER BY since, client_id').all().map((r) => r.client_id);
    return new Set([...away.filter((id) => held.has(id)), ...held]);
  }

  /** Keeps when a counted session went away (or was counted): its place in the order sessionClientIds() gives. */
  markAway(clientId: string, since: number): void {
    this.commits.queue(() => this.#sql.putAway.run(clientId, since));
  }

  /** A session no longer counted: its time goes. */
  forgetAway(clientId: string): void {
    this.commits.queue(() => this.#sql.delAway.run(clientId));
  }

  /**
   * Ends `clientId`'s stored session, as a clean start would: its subscriptions, the messages queued
   * for it and its QoS 2 state (session-cap.ts, for a client that is away). At once in memory, the
   * rows with the next commit.
   */
  endSession(clientId: string): void {
    if (this.#unsubscribeAll(clientId)) this.commits.queue(() => this.#sql.delSubs.run(clientId));
    for (const { rowId } of this.#outgoing.get(clientId) ?? []) this.commits.queue(() => this.#sql.delOut.run(rowId));
    this.#outgoing.delete(clientId);
    if (this.#incoming.delete(clientId)) this.commits.queue(() => this.#sql.delIns.run(clientId));
    this.forgetAway(clientId);
  }

  /** Every client holding a subscription whose filter is exactly `topic`. */
  getClientList(topic: string): Readable {
    const subscriptions = this.#subscriptions;
    function* clients() {
      for (const [clientId, subs] of subscriptions) if (subs.has(topic)) yield clientId;
    }
    return Readable.from(clients());
  }

  /** Persistent subscriptions whose filter starts with `prefix`, e.g. every `$share/` one. */
  subscriptionsWithPrefix(prefix: string): Array<{ clientId: string; topic: string; qos: number }> {
    const found = [];
    for (const [clientId, subs] of this.#subscriptions) {
      for (const [topic, options] of subs) if (topic.startsWith(prefix)) found.push({ clientId, topic, qos: options.qos });
    }
    return found;
  }

  // --- outgoing: messages queued for persistent sessions ------------------------------------

  async outgoingEnqueue(sub: { clientId: string }, packet: StoredPacket): Promise<void> {
    if (this.#mayQueue(sub.clientId, packet) && this.#hasRoom(sub.clientId, packet)) this.#enqueue(sub.clientId, packet);
  }

  // Not awaited: the ingest inbox makes the publish durable, and the commit queue's ordering
  // guarantees this row commits no later than the inbox row is cleared.
  async outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: StoredPacket): Promise<void> {
    for (const sub of subs) if (this.#mayQueue(sub.clientId, packet) && this.#hasRoom(sub.clientId, packet)) this.#enqueue(sub.clientId, packet);
  }

  async outgoingUpdate(client: ClientRef, packet: StoredPacket): Promise<void> {
    const queue = this.#queue(client.id);
    for (const item of queue) {
      const stored = item.packet;
      if (stored.brokerId === packet.brokerId) {
        if (stored.brokerCounter === packet.brokerCounter) {
          // Packet identifiers only matter to the current connection: kept in memory only.
          stored.messageId = packet.messageId;
          return;
        }
      } else if (stored.messageId === packet.messageId) {
        item.packet = packet;
        const [json, payload] = toRow(packet);
        const rowId = item.rowId;
        this.commits.queue(() => this.#sql.setOut.run(json, payload, rowId));
        return;
      }
    }
    // A bounded session that was full when the message came, whose client is connected: it gets
    // the message live, not kept, as a client does what it receives before a disconnect.
    if (Number.isFinite(this.queueLimit?.(client.id) ?? Infinity)) return;
    throw new Error('no such packet');
  }

  /** Set by the shared subscriptions: takes the PUBACKs of the messages they sent themselves. */
  claimAck: ((clientId: string, messageId: number | undefined) => boolean) | undefined;
  /** See SessionPersistence.mayQueue. */
  mayQueue: ((clientId: string, topic: string) => boolean) | undefined;
  /**
   * Set by main.ts: the most messages `clientId`'s session keeps (its user's ACL bound; Infinity:
   * none), and who is told of a message not kept. Unset: no bound. The bound holds whether its
   * client is away or connected: a connected client gets each message live, kept or not, and what
   * is kept is what it has not acknowledged, so a client that acknowledges nothing keeps no more.
   */
  queueLimit: ((clientId: string) => number) | undefined;
  onQueueFull: ((clientId: string, topic: string | undefined) => void) | undefined;

  async outgoingClearMessageId(client: ClientRef, packet: StoredPacket): Promise<StoredPacket | undefined> {
    if (this.claimAck?.(client.id, packet.messageId)) return undefined;
    const queue = this.#outgoing.get(client.id);
    if (!queue) return undefined;
    // Without a packet identifier (a message not forwarded to this client) it is found by its broker counter.
    const i =
      packet.messageId === undefined
        ? queue.findIndex((item) => item.packet.brokerId === packet.brokerId && item.packet.brokerCounter === packet.brokerCounter)
        : queue.findIndex((item) => item.packet.messageId === packet.messageId);
    if (i < 0) return undefined;
    const [item] = queue.splice(i, 1);
    const rowId = item!.rowId;
    this.commits.queue(() => this.#sql.delOut.run(rowId));
    return item!.packet;
  }

  outgoingStream(client: ClientRef): Readable {
    return Readable.from((this.#outgoing.get(client.id) ?? []).map((item) => item.packet));
  }

  /** Messages queued per client, for metrics. */
  get outgoingDepth(): number {
    let n = 0;
    for (const q of this.#outgoing.values()) n += q.length;
    return n;
  }

  // --- incoming QoS 2 -----------------------------------------------------------------------

  async incomingStorePacket(client: ClientRef, packet: StoredPacket): Promise<void> {
    const copy = queuedCopy(packet);
    copy.messageId = packet.messageId;
    const id = packet.messageId ?? 0;
    this.#clientIncoming(client.id).set(id, copy);
    const [json, payload] = toRow(copy);
    await this.commits.write(() => this.#sql.putIn.run(client.id, id, json, payload));
  }

  async incomingGetPacket(client: ClientRef, packet: StoredPacket): Promise<StoredPacket> {
    const found = this.#incoming.get(client.id)?.get(packet.messageId ?? 0);
    if (!found) throw new Error('no such packet');
    return found;
  }

  async incomingDelPacket(client: ClientRef, packet: StoredPacket): Promise<void> {
    const id = packet.messageId ?? 0;
    if (!this.#incoming.get(client.id)?.delete(id)) throw new Error('no such packet');
    this.commits.queue(() => this.#sql.delIn.run(client.id, id));
  }

  async cleanIncoming(client: ClientRef): Promise<void> {
    if (this.#incoming.delete(client.id)) this.commits.queue(() => this.#sql.delIns.run(client.id));
  }

  // --- wills --------------------------------------------------------------------------------

  async putWill(client: ClientRef, packet: StoredPacket): Promise<void> {
    packet.brokerId = this.#broker?.id;
    packet.clientId = client.id;
    this.#wills.set(client.id, packet);
    const [json, payload] = toRow(packet);
    await this.commits.write(() => this.#sql.putWill.run(client.id, json, payload));
  }

  async getWill(client: ClientRef): Promise<StoredPacket | undefined> {
    return this.#wills.get(client.id);
  }

  async delWill(client: ClientRef): Promise<StoredPacket | undefined> {
    const will = this.#wills.get(client.id);
    if (will) {
      this.#wills.delete(client.id);
      this.commits.queue(() => this.#sql.delWill.run(client.id));
    }
    return will;
  }

  streamWill(brokers: Record<string, unknown> = {}): Readable {
    return Readable.from([...this.#wills.values()].filter((w) => !brokers[w.brokerId ?? '']));
  }

  async destroy(): Promise<void> {
    this.commits.flush();
  }

  // --- internals ----------------------------------------------------------------------------

  #mayQueue(clientId: string, packet: StoredPacket): boolean {
    return !this.mayQueue || packet.topic === undefined || this.mayQueue(clientId, packet.topic);
  }

  #hasRoom(clientId: string, packet: StoredPacket): boolean {
    const limit = this.queueLimit?.(clientId) ?? Infinity;
    if (limit === Infinity || (this.#outgoing.get(clientId)?.length ?? 0) < limit) return true;
    this.onQueueFull?.(clientId, packet.topic);
    return false;
  }

  #enqueue(clientId: string, packet: StoredPacket): void {
    const copy = queuedCopy(packet);
    const rowId = this.#nextRowId++;
    this.#queue(clientId).push({ rowId, packet: copy });
    const [json, payload] = toRow(copy);
    this.commits.queue(() => this.#sql.putOut.run(rowId, clientId, json, payload));
  }

  #queue(clientId: string): Queued[] {
    let q = this.#outgoing.get(clientId);
    if (!q) this.#outgoing.set(clientId, (q = []));
    return q;
  }

  /** Keeps a subscription (new or changed) in the client's map and, when it queues (QoS > 0), in the trie. */
  #subscribe(clientId: string, topic: string, options: SubscriptionOptions): void {
    this.#clientSubs(clientId).set(topic, options);
    if (options.qos > 0) this.#trie.add(topic, { clientId, topic, qos: options.qos, rh: options.rh, rap: options.rap, nl: options.nl });
    else this.#trie.remove(topic, { clientId, topic });
  }

  /** Forgets every subscription of the client, in memory; whether it had any. */
  #unsubscribeAll(clientId: string): boolean {
    const subs = this.#subscriptions.get(clientId);
    if (!subs) return false;
    for (const topic of subs.keys()) this.#trie.remove(topic, { clientId, topic });
    this.#subscriptions.delete(clientId);
    this.#byTopic = new Map();
    return true;
  }

  #clientSubs(clientId: string) {
    let s = this.#subscriptions.get(clientId);
    if (!s) this.#subscriptions.set(clientId, (s = new Map()));
    return s;
  }

  #clientIncoming(clientId: string) {
    let s = this.#incoming.get(clientId);
    if (!s) this.#incoming.set(clientId, (s = new Map()));
    return s;
  }
}

/** MQTT matching, including [MQTT-4.7.2-1]: a filter starting with a wildcard never matches a `$` topic. */
export function matchesFilter(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  return topicMatches(filter, topic);
}
