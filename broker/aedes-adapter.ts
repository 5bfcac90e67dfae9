// Every place where the broker relies on how Aedes works inside, rather than on its documented
// options, in one file: each reach-in says why the public API does not suffice and which test
// breaks if a new Aedes changes what it relies on. Checked against aedes 1.2.0 (aedes.js,
// lib/client.js, lib/handlers/connect.js, lib/write.js); aedes-adapter.test.ts checks the installed
// one. The rest of the broker uses the typed functions below; eslint.config.js refuses private
// fields, double casts, hook and write patches and writes on a client's connection anywhere else in
// broker/.
import type { Aedes, AedesOptions, Client } from 'aedes';
import type { Redis } from 'ioredis';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { coalesceWrites } from '../lib/wire.js';
import type { Access } from './auth.js';
import type { ConnectionLimits } from './limits.js';

// --- connections -------------------------------------------------------------------------

/**
 * Hands a TCP connection to Aedes with its writes coalesced: Aedes writes every packet with
 * mqtt-packet's writeToStream(packet, client.conn) (lib/write.js), one conn.write() per part of a
 * packet, corked only until the next tick, and no option batches more; on loopback a write system
 * call costs far more than its bytes. lib/wire.ts (shared with the mqtt.js clients) wraps
 * socket.write to keep the socket corked for the rest of the turn; it relies on Aedes writing
 * through conn.write(), not through a pipe or writev.
 * Breaks (as a drop in throughput, not a failure): npm run bench:broker.
 */
export function handleTcp(broker: Aedes, socket: Socket, unsent?: UnsentBound): Client {
  coalesceWrites(socket);
  return holdUntilConnack(broker, boundUnsent(broker.handle(socket), unsent));
}

/** Hands a WebSocket's stream to Aedes, with the HTTP upgrade request addressOf() reads the peer from. */
export function handleWebSocket(broker: Aedes, stream: Duplex, req: IncomingMessage, unsent?: UnsentBound): Client {
  return holdUntilConnack(broker, boundUnsent(broker.handle(stream, req), unsent));
}

/** The most bytes written to a connection and not yet sent, and who is told when one passes it. */
export interface UnsentBound {
  maxBytes: number;
  onPassed(client: Client, bytes: number): void;
  /**
   * Whose live deliveries do not wait for its connection to drain (a stranger's: the public login's).
   * The others' do, as in Aedes: the services rely on it (a consumer that holds as many messages as
   * it may stops reading, and TCP carries the wait back to the broker, lib/mqtt.ts consume).
   */
  detached(client: Client): boolean;
  /** How long a detached client's writes may wait with nothing of its buffer going out (Aedes's own drainTimeout by default). */
  stalledMs?: number;
}

/**
 * A client that stops reading holds up every other client's deliveries: Aedes calls a live
 * delivery done only once the connection's buffer has drained (write.js, client.waitForDrain), and
 * keeps at most `concurrency` (100) deliveries under way in the whole broker (mqemitter), so a
 * hundred messages for a frozen client stopped all deliveries until Aedes's drainTimeout (60 s)
 * closed it; a stranger with the public login could do it again at will. Here a live delivery is
 * done for the broker once it is handed to the connection, and a connection with more than
 * `maxBytes` not yet sent is closed: it is not reading. What a client's own stream sends (its
 * session's queue as it resumes, the retained messages of its SUBSCRIBE) still waits for the
 * connection to drain, so a large backlog goes out at the client's pace.
 * Breaks: aedes-adapter.test.ts (missingInternals), test/broker-hostile.test.ts ("stops reading",
 * "larger than the unsent bound").
 */
function boundUnsent(client: Client, unsent: UnsentBound | undefined): Client {
  if (!unsent) return client;
  const c = internals(client);
  if (typeof c.waitForDrain !== 'function' || typeof c.deliver0 !== 'function' || typeof c.deliverQoS !== 'function') return client; // missingInternals() says so
  const aedesWait = c.waitForDrain.bind(client);
  // A detached client's writes that wait for the connection to drain: told once it has, or once it
  // is closed. Not Aedes's own waiting (client.js waitForDrain): its timer closes the connection
  // 60 s after the first write that waits unless the buffer has emptied, and live writes, which
  // keep coming while a client reads at about their pace, would have it cut off a client that does
  // read. Here the client is closed when, while writes wait, nothing it was sent goes out for
  // `stalledMs`: it has stopped reading, whatever it still sends (PINGREQs keep it alive otherwise).
  // The others keep Aedes's, timer included.
  let waiting: Array<() => void> = [];
  let watch: NodeJS.Timeout | undefined;
  // What has gone out of the buffer so far: a socket's bytes handed to the system (bytesWritten
  // counts the buffer too); a WebSocket stream says only what is buffered, so less of it is progress.
  const conn = client.conn as Duplex & { bytesWritten?: number };
  const sent = () => (typeof conn.bytesWritten === 'number' ? conn.bytesWritten - conn.writableLength : -conn.writableLength);
  let before = 0;
  const cut = () => {
    unsent.onPassed(client, conn.writableLength);
    client.close();
  };
  const stalled = () => {
    if (waiting.length === 0 || client.closed) return void (watch = undefined);
    const now = sent();
    if (now > before) {
      before = now;
      return void watch?.refresh();
    }
    watch = undefined;
    cut();
  };
  const drained = () => {
    const told = waiting;
    waiting = [];
    clearTimeout(watch);
    watch = undefined;
    for (const done of told) done();
  };
  client.conn.on('close', drained);
  c.waitForDrain = (done) => {
    if (conn.writableLength > unsent.maxBytes && !client.closed) cut();
    if (client.closed || client.conn.destroyed) return void setImmediate(done);
    if (!unsent.detached(client)) return aedesWait(done);
    if (waiting.length === 0) client.conn.once('drain', drained);
    waiting.push(done);
    if (!watch) {
      before = sent();
      watch = setTimeout(stalled, unsent.stalledMs ?? 60_000);
      watch.unref();
    }
  };
  // A retained message sent for a SUBSCRIBE has no broker id (handlers/subscribe.js sendRetained):
  // its stream goes on when it is written. Any other comes from the broker's deliveries, which go on
  // in the next turn, as Aedes's own callbacks do: at once, the messages waiting for a place would
  // each be started from the one before, over and over (held ones released at a CONNACK had
  // overflowed the stack, and delivered later messages ahead of the held ones, which Aedes then
  // dropped as duplicates).
  const detach =
    (deliver: Deliver): Deliver =>
    (packet, done) => {
      if ((packet as { brokerId?: unknown }).brokerId === null || !unsent.detached(client)) return deliver(packet, done);
      deliver(packet, noop);
      setImmediate(done);
    };
  c.deliver0 = detach(c.deliver0);
  c.deliverQoS = detach(c.deliverQoS);
  return client;
}

const noop = () => {};

type Deliver = (packet: object, done: () => void) => void;
const held = new WeakMap<Client, { release: () => void }>();
const watched = new WeakSet<Aedes>();

/**
 * Holds the messages Aedes delivers to a connection until its CONNACK has gone out. Aedes restores
 * a resumed session's subscriptions (handlers/connect.js, restoreSubs) a few persistence steps
 * before it writes the CONNACK (storeWill, registerClient), and a message published in between was
 * written ahead of it, against MQTT-3.2.0-1: the first packet a server sends is the CONNACK. mqtt.js
 * then stalls for good: it keeps its PUBACK for that message until it is connected, and handles no
 * packet after it, the CONNACK included. On several nodes, where each of those steps is a Redis
 * round trip and a publish is routed after its PUBACK, half of the conformance runs hit it. Held
 * messages go out, in order, when Aedes reports the CONNACK written; if the connection ends first,
 * they are released undelivered (a persistent session's copy stays queued for its next connection).
 * Breaks: aedes-adapter.test.ts ("nothing reaches a resuming session before its CONNACK").
 */
function holdUntilConnack(broker: Aedes, client: Client): Client {
  const c = internals(client);
  const original = { deliver0: c.deliver0, deliverQoS: c.deliverQoS };
  if (typeof original.deliver0 !== 'function' || typeof original.deliverQoS !== 'function') return client; // missingInternals() says so
  let waiting: Array<{ deliver: Deliver; packet: object; done: () => void }> | undefined = [];
  const hold = (deliver: Deliver): Deliver => (packet, done) => {
    if (waiting === undefined) deliver(packet, done);
    else waiting.push({ deliver, packet, done });
  };
  c.deliver0 = hold(original.deliver0);
  c.deliverQoS = hold(original.deliverQoS);
  const release = (send: boolean) => {
    const queued = waiting;
    if (queued === undefined) return;
    waiting = undefined;
    c.deliver0 = original.deliver0;
    c.deliverQoS = original.deliverQoS;
    held.delete(client);
    for (const { deliver, packet, done } of queued) {
      if (send) deliver(packet, done);
      else done();
    }
  };
  held.set(client, { release: () => release(true) });
  client.conn.once('close', () => release(false));
  if (!watched.has(broker)) {
    watched.add(broker);
    broker.on('connackSent', (_packet, connected) => held.get(connected)?.release());
  }
  return client;
}

/**
 * Calls `onChunk` with every chunk of `stream` just before Aedes parses it. Aedes reads its
 * connection in paused mode ('readable', then read(null) in lib/client.js nextBatch), and Node emits
 * 'data' for each chunk read() returns, before returning it: a 'data' listener added after
 * broker.handle() sees every chunk first, and (a 'readable' listener being there) does not switch
 * the stream to flowing mode. So a limit can close the connection before the parser buffers an
 * oversized packet, and a verdict on a packet exists before Aedes's hooks run for it.
 * Breaks: test/broker-limits.test.ts (a 256 MiB CONNECT), the protocol cases of the conformance suite.
 */
export function inboundBytes(stream: Duplex, onChunk: (chunk: Buffer) => void): () => void {
  const listener = (chunk: Buffer | string) => onChunk(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  stream.on('data', listener);
  return () => stream.off('data', listener);
}

const CONNACK = (returnCode: number) => Buffer.from([0x20, 0x02, 0x00, returnCode]);
/** A refused peer that keeps its side open is cut off after this long. */
const LINGER_MS = 1000;

/**
 * Answers a CONNECT with `returnCode` and closes the connection. end() writes the CONNACK out at
 * once (it uncorks what handleTcp's coalescing corked), so it leaves even when Aedes destroys the connection
 * right after, which it does when a preConnect refuses or its parser rejects the CONNECT.
 */
export function refuseConnect(stream: Duplex, returnCode: number): void {
  stream.end(CONNACK(returnCode));
  setTimeout(() => stream.destroy(), LINGER_MS).unref();
}

/** The client's network address: the TCP peer, or for a WebSocket the peer of its HTTP upgrade. */
export function addressOf(client: Client): string | undefined {
  return (client.conn as { remoteAddress?: string }).remoteAddress ?? client.req?.socket?.remoteAddress;
}

const refusal = (message: string) => Object.assign(new Error(message), { returnCode: 5 as const });

/**
 * The CONNECT decisions, taken in preConnect rather than authenticate. Aedes calls authenticate
 * after init() has given the connection the client id and clean flag it asked for; when
 * authenticate refuses, client.close() runs persistence.cleanIncoming(client) for a clean client
 * and so wipes the QoS 2 state of the session that really holds that id. preConnect runs before
 * init(), while client.id is still null: a refusal there touches no session. preConnect cannot
 * carry a CONNACK return code (Aedes just closes the connection), so refuseConnect() answers first.
 * Aedes's authenticate then only confirms that preConnect admitted the client.
 * Breaks: "a client id belongs to one user" in the conformance suite, test/mqtt-access.test.ts.
 */
export function connectHooks({ limits, access, presence }: { limits: ConnectionLimits; access: Access; presence?: Presence }): Pick<AedesOptions, 'preConnect' | 'authenticate'> {
  return {
    preConnect(client, packet, callback) {
      const violation = limits.violation(client.conn);
      // Already answered (and logged) on the raw bytes, before Aedes parsed the CONNECT.
      if (violation) return callback(refusal(violation.reason), false);
      const forwarded = client.req?.headers['x-real-ip'];
      const admission = access.admit({
        clientId: packet.clientId,
        username: packet.username,
        password: packet.password,
        will: packet.will,
        address: addressOf(client),
        forwardedFor: typeof forwarded === 'string' ? forwarded : undefined,
      });
      if (!admission.ok) {
        refuseConnect(client.conn as Duplex, admission.returnCode);
        return callback(refusal(admission.reason), false);
      }
      access.bind(client, admission.user);
      // Nothing more is read from the connection until Aedes has sent the CONNACK (it resumes
      // reading then, handlers/connect.js emptyQueue). Aedes pauses only once the login begins: a
      // packet that came in a later read while this hook or its next tick ran was handled at once,
      // a SUBSCRIBE before the client had its id, answered ahead of the CONNACK and stored for
      // nobody (seen on several nodes, where this hook waits for Redis).
      (client as unknown as Pick<ClientInternals, 'pause'>).pause();
      const shared = presence?.arrive(packet.clientId, client.conn, packet.clean);
      if (!shared) return callback(null, true);
      // Several nodes: connected for all of them before its session is restored.
      shared.then(
        () => callback(null, true),
        (err: Error) => callback(refusal(`its presence could not be shared with the other nodes: ${err.message}`), false),
      );
    },
    authenticate(client, _username, _password, done) {
      if (access.admitted(client)) done(null, true);
      else done(refusal('not admitted'), false);
    },
  };
}

// --- durable ingest -------------------------------------------------------------------------

/**
 * Calls `onRouted` once Aedes has routed a publish to every session, with the very object its
 * authorizePublish hook was given, so durable ingest can key what it stored on that object
 * (ingest.ts clears the message's inbox row). The `published` option is public, but that it gets
 * the same object is not: Aedes keeps the original packet in its PublishState and hands it to
 * `published` (aedes.js publish, callPublished), while what it delivers is a copy (new Packet);
 * and no identifier exists before authorizePublish (brokerCounter is assigned in that copy).
 * Breaks: aedes-adapter.test.ts; in the broker, inbox rows that are never cleared, so messages are
 * routed again after each restart.
 */
export function whenRouted(broker: Aedes, onRouted: (packet: object) => void): void {
  broker.published = (packet, _client, done) => {
    onRouted(packet);
    done(null);
  };
}

/** Aedes's map of the clients connected to this broker (not in its types; it deletes a client's entry when it goes). */
const clientsOf = (broker: Aedes) => (broker as unknown as { clients: Record<string, Client> }).clients;

/** The clients connected to this broker. */
export const connectedClients = (broker: Aedes): Client[] => Object.values(clientsOf(broker));

/**
 * Which client ids have a connection to this broker, connected or connecting: from its admission
 * at CONNECT (connectHooks) until its socket closes. Aedes's own map (`clients`) misses a client
 * in two cases the session bounds must not: while it connects (its stored subscriptions are
 * restored, and deliveries to them begin, an event-loop turn before it is registered), and once a
 * second connection with its id has closed between its login and its registration (Aedes 1.2.0's
 * Client.close unregisters by id, deleting the first connection's entry while it stays open).
 * On several nodes, the ids with a bound are also told to `shared` (cluster-bounds.ts), so that
 * every node knows who is connected anywhere.
 */
export class Presence {
  readonly #connections = new Map<string, number>();

  /**
   * `onGone`: told when an id's last connection has closed (its session, if any, is away from then on).
   * `shared`: where the ids it says are bounded are present cluster-wide.
   */
  constructor(
    private readonly onGone: (clientId: string) => void = () => {},
    private readonly shared?: SharedPresence,
  ) {}

  /**
   * An admitted CONNECT's connection; an empty id (a clean session's, named by Aedes) is nobody's
   * session. Returns a promise when the id is bounded and shared: connected cluster-wide once it resolves.
   */
  arrive(clientId: string, conn: { once(event: 'close', listener: () => void): unknown }, clean = false): Promise<void> | undefined {
    if (clientId === '') return undefined;
    this.#connections.set(clientId, (this.#connections.get(clientId) ?? 0) + 1);
    const shared = this.shared?.bounded(clientId) ? this.shared : undefined;
    conn.once('close', () => {
      const left = this.#connections.get(clientId)! - 1;
      if (left > 0) return void this.#connections.set(clientId, left);
      this.#connections.delete(clientId);
      shared?.gone(clientId);
      this.onGone(clientId);
    });
    return shared?.arrive(clientId, clean);
  }

  /** Has `clientId` a connection here now (connected, or connecting)? */
  has(clientId: string): boolean {
    return this.#connections.has(clientId);
  }
}

/**
 * The connections Aedes registered whose streams are still open: what broker.connectedClients
 * should say. Aedes 1.2.0 counts one off too many when a second connection with the same id closes
 * between its login and its registration (see Presence), and never counts it back. Counted from
 * registration ('client'), not from 'clientReady', which waits until a session's queue is sent.
 * Breaks: "keeps a client present while a second connection…" (aedes-adapter.test.ts).
 */
export function countConnected(broker: Aedes): () => number {
  const open = new Set<Client>();
  broker.on('client', (client) => {
    // Closing already: its 'close' may have gone by.
    if (client.closed || client.conn.destroyed) return;
    open.add(client);
    client.conn.once('close', () => open.delete(client));
  });
  return () => open.size;
}

/** Presence across nodes (cluster-bounds.ts ClusterBounds). */
export interface SharedPresence {
  bounded(clientId: string): boolean;
  arrive(clientId: string, clean: boolean): Promise<void>;
  gone(clientId: string): void;
}

/** Closes every client's connection; returns how many. */
export function closeEveryClient(broker: Aedes): number {
  const clients = connectedClients(broker);
  for (const client of clients) client.close();
  return clients.length;
}

// --- the group queue's own deliveries -----------------------------------------------------

interface ClientInternals {
  /** The packet identifier counter Aedes uses for the connection's deliveries. */
  _nextId: number;
  /** mqtt-packet's parser; Aedes's `enqueue` listener hands each packet to its handlers. */
  _parser: PacketParser;
  /** Refreshed by Aedes on every packet; the connection is closed when it fires. */
  _keepaliveTimer: NodeJS.Timeout | null;
  /** What a subscription delivers with (handlers/subscribe.js takes one of them when it subscribes). */
  deliver0: Deliver;
  deliverQoS: Deliver;
  /** Packets of the current read still being handled; Aedes reads on once none is left. */
  _parsingBatch: number;
  /** Called as each packet is handled: counts it off, and reads on once none is left. */
  _nextBatch: (err?: Error | null) => void;
  /** What a write that filled the connection's buffer waits with (write.js). */
  waitForDrain: (done: () => void) => void;
  /** Stops handling what the connection reads, until resume() (Aedes's own use: while a CONNECT is handled). */
  pause: () => void;
}

const internals = (client: Client) => client as unknown as ClientInternals;

/** mqtt-packet's Parser, as far as the PUBACK fast path reads it (checked by missingInternals). */
interface PacketParser extends NodeJS.EventEmitter {
  parse(buf: Buffer): number;
  /** Bytes of a packet not complete yet; 0 between packets. */
  _list: { length: number };
  /** The step of the packet being read; 0 (its header) between packets. */
  _stateCounter: number;
  error: Error | null;
  /** The connection's CONNECT once parsed: its protocol level decides how later packets read. */
  settings?: { protocolVersion?: number };
}

/**
 * What of the above a connected client lacks: empty for the Aedes this was written for. An Aedes
 * that renamed or reshaped one would not fail here but quietly (nextPacketId counting on NaN,
 * takePackets standing aside), so aedes-adapter.test.ts checks it against the installed one.
 */
export function missingInternals(client: Client): string[] {
  const c = internals(client);
  const missing: string[] = [];
  if (!Number.isInteger(c._nextId)) missing.push('_nextId (a packet identifier counter)');
  if (typeof c._parser?.listeners !== 'function' || c._parser.listeners('packet').length !== 1) missing.push("_parser with one 'packet' listener");
  if (typeof c._parser?.parse !== 'function' || typeof c._parser._list?.length !== 'number' || c._parser._stateCounter !== 0) {
    missing.push('_parser.parse, _list and _stateCounter (the bytes of a packet under way)');
  }
  if (!c._keepaliveTimer || typeof c._keepaliveTimer.refresh !== 'function') missing.push('_keepaliveTimer (a timer, with a keep-alive set)');
  if (typeof client.conn?.write !== 'function') missing.push('conn (the connection Aedes writes to)');
  if (typeof c.deliver0 !== 'function' || typeof c.deliverQoS !== 'function') missing.push('deliver0 and deliverQoS (what a subscription delivers with)');
  if (!Number.isInteger(c._parsingBatch) || typeof c._nextBatch !== 'function') missing.push('_parsingBatch and _nextBatch (the count of packets a read waits for)');
  if (typeof c.waitForDrain !== 'function') missing.push('waitForDrain (what a write that filled the buffer waits with)');
  if (typeof c.pause !== 'function') missing.push('pause (what stops reading while a CONNECT is handled)');
  return missing;
}

/**
 * Writes packets the group queue encoded itself (broker/publish-packet.ts) on the client's
 * connection, next to Aedes's own writes. client.publish() would not do: it takes its own packet
 * identifier, stores each delivery in the session's outgoing queue and writes each on its own,
 * where the group queue keeps its deliveries (and their identifiers, below) in its durable store
 * and sends what one pass hands a member in one write. Nothing is written once Aedes has closed
 * the connection or before it has accepted it (client.connected).
 * Breaks: aedes-adapter.test.ts, the conformance suite's shared-subscription cases, test/broker-backlog.test.ts.
 */
export function writePackets(client: Client, packets: Buffer): void {
  // A failed write means the connection is going away; the disconnect handling takes over.
  if (client.connected && !client.closed) client.conn.write(packets);
}

/**
 * Takes the next packet identifier from the counter Aedes uses for this connection, skipping those
 * `inUse`: the group queue sends its PUBLISH packets itself, on the same connection as Aedes's own
 * deliveries, so both must draw from one counter (client._nextId).
 * Breaks: aedes-adapter.test.ts, the conformance suite's shared-subscription cases, test/broker-backlog.test.ts.
 */
export function nextPacketId(client: Client, inUse: { has(id: number): boolean }): number {
  const c = internals(client);
  for (;;) {
    const id = c._nextId;
    c._nextId = id >= 65535 ? 1 : id + 1;
    if (!inUse.has(id)) return id;
  }
}

/** A PUBLISH as mqtt-packet parses it. */
export interface ParsedPublish {
  cmd: 'publish';
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  dup: boolean;
  messageId?: number;
  properties?: unknown;
}

export interface PacketTakers {
  /** A PUBACK: true when it acknowledged one of the group queue's own deliveries (then Aedes never sees it). */
  puback(client: Client, messageId: number): boolean;
  /**
   * A PUBLISH: false leaves it to Aedes; true when taken, and then `done` is called once it is
   * handled: later, or at once with an error (which closes the connection, as in Aedes).
   */
  publish?(client: Client, packet: ParsedPublish, done: (err?: Error | null) => void): boolean;
  /** An UNSUBSCRIBE's filters, as it is parsed, before Aedes handles it (in order with the packets around it). */
  unsubscribe?(client: Client, filters: string[]): void;
  /** Told when a connection's packets cannot be taken (its parser has `listeners` listeners, not Aedes's one). */
  notTaken?(client: Client, listeners: number): void;
  /** Whether a connection was condemned (a protocol violation, limits.ts): nothing more of it is taken. */
  condemned?(client: Client): boolean;
}

/**
 * Hands each PUBACK and PUBLISH of a connected client to `takers` before Aedes sees it. The PUBACKs
 * they claim (acknowledgements of the group queue's own deliveries) skip Aedes's handling: a
 * promise, a persistence look-up and an event per acknowledgement. The PUBLISH packets they take
 * (those only shared subscriptions want, broker/direct-publish.ts) skip Aedes's publish pipeline.
 * At tens of thousands of messages a second both are a good part of the broker's time. The others
 * go on to Aedes as before. The one listener of client._parser's 'packet' event is Aedes's
 * `enqueue`; it counts the packets of a read it is handling (client._parsingBatch) and reads on once
 * none is left (client._nextBatch): a PUBACK taken here is never counted; a PUBLISH taken here is
 * counted and counted off the same way (and read ahead of like Aedes's, ingest.ts).
 * client._keepaliveTimer is refreshed as Aedes would. If the parser has another listener count,
 * nothing is taken over (so nothing else may listen to it before this: it would turn both fast
 * paths off, which cost the broker half again its CPU per message once; UNSUBSCRIBEs are told here).
 * Breaks: aedes-adapter.test.ts, the conformance suite's flow-control and re-dispatch cases
 * (deliveries never acknowledged), broker/direct-publish.test.ts, test/broker-write-behind.test.ts.
 */
/** What the broker logs (once) when a connection's packets cannot be taken: the tests look for it. */
export const FAST_PATHS_OFF = "the PUBACK and PUBLISH fast paths are off: a connection's parser has a listener besides Aedes's";

export function takePackets(broker: Aedes, takers: PacketTakers): void {
  broker.on('client', (client) => {
    const c = internals(client);
    const parser = c._parser;
    type Parsed = { cmd: string; messageId?: number; unsubscriptions?: string[] };
    const unsubscribe = (packet: Parsed) => packet.cmd === 'unsubscribe' && takers.unsubscribe?.(client, packet.unsubscriptions ?? []);
    const handlers = parser.listeners('packet') as Array<(this: unknown, packet: Parsed) => void>;
    if (handlers.length !== 1) {
      // Not the Aedes this was written for, or someone listens already: nothing is taken over;
      // UNSUBSCRIBEs are still told.
      takers.notTaken?.(client, handlers.length);
      parser.on('packet', unsubscribe);
      return;
    }
    const enqueue = handlers[0]!;
    parser.removeListener('packet', enqueue);
    /** PUBLISH packets the taker already left, read from the raw bytes (takeUnparsed): the next ones parsed. */
    let declined = 0;
    // Connected, and not closed or condemned by a packet before (Aedes closes at once on a protocol
    // error, and `connected` turns false only later; limits.ts destroys the socket under a
    // WebSocket's stream): a packet on a dropped connection is Aedes's, which handles nothing more of it.
    const open = () => client.connected && !client.closed && !client.conn.destroyed && !takers.condemned?.(client);
    // What either path takes. A PUBACK the group queue claims still raises Aedes's 'ack' event
    // (metrics count it). A PUBLISH taken is counted as Aedes's `enqueue` counts a packet of the
    // read, and counted off by its `done`; one the taker leaves is not counted.
    const takePuback = (messageId: number) => {
      if (!takers.puback(client, messageId)) return false;
      broker.emit('ack', { cmd: 'puback', messageId } as never, client);
      return true;
    };
    const publishTaker = takers.publish;
    const takePublish =
      publishTaker &&
      ((packet: ParsedPublish) => {
        c._parsingBatch++;
        if (publishTaker(client, packet, c._nextBatch)) return true;
        c._parsingBatch--;
        return false;
      });
    const refreshKeepalive = () => c._keepaliveTimer?.refresh();
    parser.on('packet', function (this: unknown, packet: Parsed) {
      unsubscribe(packet);
      // A condemned connection's PUBACK acknowledges nothing (Aedes would pass it to the group
      // queue too, through the store's claimAck); like one taken, it is never counted in the read.
      if (packet.cmd === 'puback' && takers.condemned?.(client)) return;
      if (packet.cmd === 'publish' && declined > 0) {
        declined--;
        return enqueue.call(this, packet);
      }
      if (open()) {
        const taken =
          packet.cmd === 'puback' ? packet.messageId !== undefined && takePuback(packet.messageId) : packet.cmd === 'publish' && takePublish !== undefined && takePublish(packet as ParsedPublish);
        if (taken) return void refreshKeepalive();
      }
      enqueue.call(this, packet);
    });
    takeUnparsed(parser, { open, takePuback, takePublish, declined: () => declined++, refreshKeepalive });
  });
}

/** Calls `listener` with each packet mqtt-packet parses on `client`'s connection (after Aedes's own handling starts): what the fast path below leaves to the parser. */
export function onParsed(client: Client, listener: (packet: { cmd: string; messageId?: number }) => void): void {
  internals(client)._parser.on('packet', listener);
}

/** The fixed header of a PUBACK with only its packet identifier (2 bytes): how members acknowledge. */
const PUBACK = 0x40;
/** A PUBLISH's packet type (its fixed header's high nibble); the low one is DUP, QoS and RETAIN. */
const PUBLISH_TYPE = 3;

/**
 * The fast paths for what mqtt-packet would parse. A member draining a backlog sends one 4-byte
 * PUBACK per message, and a publisher one PUBLISH; mqtt-packet spends on each a packet object, its
 * buffer list, its state steps and an event: a tenth of the broker's time in a drain, and about as
 * much for the publishes (docs/benchmarks.md). So each chunk the parser is given is read here first,
 * when it starts between two packets, and these are taken out, the bytes around them going to the
 * parser in their order:
 * - PUBACKs of exactly 4 bytes that `takers.puback` claims;
 * - PUBLISH packets of MQTT 3.1 and 3.1.1 at QoS 0 or 1, not retained, whole in the chunk, that
 *   `takers.publish` takes (read here as mqtt-packet reads them; their bytes passed the protocol
 *   rules, limits.ts, before the parser was given them). One it leaves goes to the parser after all.
 * Anything else (a packet cut by the chunk's end, a PUBACK with a reason code, one the group queue
 * does not claim, a chunk that starts inside a packet) is the parser's, as before.
 * Breaks: aedes-adapter.test.ts ("takes PUBACKs before mqtt-packet parses them", "takes PUBLISH
 * packets before mqtt-packet parses them").
 */
interface Unparsed {
  /** Whether packets of the connection may be taken now. */
  open(): boolean;
  /** Takes a PUBACK (true), or leaves it to the parser. */
  takePuback(messageId: number): boolean;
  /** Takes a PUBLISH (true), or leaves it; undefined when no PUBLISH is taken at all. */
  takePublish: ((packet: ParsedPublish) => boolean) | undefined;
  /** A PUBLISH read here that the taker left: the parser's after all (and not the taker's again). */
  declined(): void;
  refreshKeepalive(): void;
}

function takeUnparsed(parser: PacketParser, { open, takePuback, takePublish, declined, refreshKeepalive }: Unparsed): void {
  const parse = parser.parse.bind(parser);
  /** Chunks given to parse() while one is being read here (a handler reading on): read after it, in order. */
  let later: Buffer[] | undefined;
  parser.parse = (buf: Buffer): number => {
    if (later) {
      later.push(buf);
      return parser._list.length;
    }
    later = [];
    let left = 0;
    try {
      for (let chunk: Buffer | undefined = buf; chunk; chunk = later.shift()) left = readChunk(chunk);
    } finally {
      later = undefined;
    }
    return left;
  };
  /** A PUBLISH whose body is buf[from, to) as mqtt-packet would parse it, when this path reads it. */
  const publishOf = (header: number, buf: Buffer, from: number, to: number): ParsedPublish | undefined => {
    const qos = (header >> 1) & 3;
    const version = parser.settings?.protocolVersion;
    if (qos > 1 || header & 1 || !takePublish || (version !== 4 && version !== 3) || to - from < 2) return undefined;
    const topicEnd = from + 2 + buf.readUInt16BE(from);
    const payloadFrom = topicEnd + (qos > 0 ? 2 : 0);
    if (payloadFrom > to) return undefined; // malformed: the parser's error
    return {
      cmd: 'publish',
      retain: false,
      qos: qos as 0 | 1,
      dup: (header & 8) !== 0,
      topic: buf.toString('utf8', from + 2, topicEnd),
      ...(qos > 0 ? { messageId: buf.readUInt16BE(topicEnd) } : {}),
      payload: buf.subarray(payloadFrom, to),
    };
  };
  const readChunk = (buf: Buffer): number => {
    let from = 0; // bytes before it are handed on or taken
    let o = 0;
    let took = false;
    while (o < buf.length && open() && parser._list.length === 0 && parser._stateCounter === 0 && !parser.error) {
      // The fixed header: type and flags, then the remaining length (1 to 4 bytes).
      let length = 0;
      let i = o + 1;
      let complete = false;
      for (let n = 0, scale = 1; n < 4 && i < buf.length; n++, scale *= 128) {
        const b = buf[i++]!;
        length += (b & 0x7f) * scale;
        if (!(b & 0x80)) {
          complete = true;
          break;
        }
      }
      if (!complete || i + length > buf.length) break; // cut by the chunk's end (or malformed): the parser's
      const header = buf[o]!;
      const isPuback = header === PUBACK && length === 2;
      const publish = !isPuback && header >> 4 === PUBLISH_TYPE ? publishOf(header, buf, i, i + length) : undefined;
      if (isPuback || publish) {
        // The packets before it go first, so that everything is handled in the order it came.
        if (from < o) parse(buf.subarray(from, o));
        // A parse error closes the connection; the parser would have dropped the rest of its input.
        if (parser.error) return 0;
        let taken = false;
        if (open() && parser._list.length === 0) {
          if (!publish) taken = takePuback(buf.readUInt16BE(i));
          else if (!(taken = takePublish!(publish))) declined();
        }
        if (taken) {
          took = true;
          from = i + length;
        } else from = o; // the parser's after all
      }
      o = i + length;
    }
    if (took) refreshKeepalive();
    return from < buf.length ? parse(from === 0 ? buf : buf.subarray(from)) : parser._list.length;
  };
}

/**
 * Lets Aedes read a connection's next packets before a publish of it is done. Aedes handles the
 * packets of one read together and reads on only once every one is done (client._parsingBatch,
 * counted off by client._nextBatch, lib/client.js); a publish whose PUBACK waits for a member's
 * acknowledgement (write-behind, group-queue.ts) would hold the publisher's whole connection that
 * long, and the members would then wait for the publisher. The publish is counted off now, and the
 * function returned counts it again: call it right before the publish's own `done`, which counts it
 * off once more, so that Aedes's count stays right. Call outside Aedes's parse (reading on parses).
 * Breaks: "reads a publisher on while its PUBACKs wait…" (test/broker-write-behind.test.ts).
 */
export function readAhead(client: Client): () => void {
  const c = internals(client);
  c._nextBatch();
  return () => {
    c._parsingBatch++;
  };
}

/** The most topic levels Aedes accepts in a PUBLISH (broker.maxTopicLevels, set from its options; not in its types). */
export const maxTopicLevels = (broker: Aedes): number => (broker as unknown as { maxTopicLevels?: number }).maxTopicLevels ?? 100;

interface MatcherInternals {
  mq: { _matcher: { add(topic: string, fn: unknown): unknown; remove(topic: string, fn?: unknown): unknown; match(topic: string): unknown[] } };
}

/**
 * Whether Aedes has a subscriber (an online client's subscription, or one of its own) for a topic:
 * asks the topic matcher of its emitter (broker.mq._matcher, a Qlobber), remembering each answer
 * until a subscription is added or removed there (its add and remove are wrapped to say so).
 * Breaks: "each message goes to exactly one member of each group, and to every normal subscriber"
 * (test/broker-conformance.test.ts), and broker/direct-publish.test.ts.
 */
export function subscriberCheck(broker: Aedes): (topic: string) => boolean {
  const matcher = (broker as unknown as MatcherInternals).mq._matcher;
  let known = new Map<string, boolean>();
  const add = matcher.add.bind(matcher);
  const remove = matcher.remove.bind(matcher);
  matcher.add = (topic, fn) => {
    known = new Map();
    return add(topic, fn);
  };
  matcher.remove = (topic, fn) => {
    known = new Map();
    return remove(topic, fn);
  };
  return (topic) => {
    let has = known.get(topic);
    if (has === undefined) {
      has = matcher.match(topic).length > 0;
      if (known.size > 10_000) known = new Map();
      known.set(topic, has);
    }
    return has;
  };
}

// --- the fan-out between nodes (mqemitter-redis) -------------------------------------------

interface FanoutInternals {
  subConn: Redis;
  pubConn: Redis;
  closed?: boolean;
  closing?: boolean;
  emit(msg: object, done?: (err?: Error | null) => void): unknown;
  close(cb?: () => void): unknown;
  /** MQEmitter's own close (bookkeeping only), which mqemitter-redis calls once both connections ended. */
  _close(cb: () => void): void;
  /** mqemitter-redis's default for an emit without a callback (reports on `state`, unless closing). */
  _onError(err?: Error | null): void;
}

/** Longest the fan-out's close waits for publishes already on their way to Redis. */
const FANOUT_DRAIN_MS = 5000;

/**
 * Makes the fan-out's close, which Aedes calls at the end of broker.close(), finish what is in
 * flight. mqemitter-redis 7 (mqemitter-redis.js, close) sends QUIT on both connections at once,
 * whatever publishes are still waiting for Redis's answer (Aedes's close does not wait for them:
 * its own $SYS publishes of the clients it closes, and client publishes between their PUBACK and
 * their fan-out), and it leaves QUIT's promise unhandled. ioredis 5 rejects that QUIT with
 * "Connection is closed." when commands were still queued on the connection (redis/ioredis#2025),
 * and a node under load then died on an unhandled rejection (exit 1) in the middle of a graceful
 * stop. Here close first waits (at most FANOUT_DRAIN_MS) for the publishes already handed to
 * Redis (and those that come meanwhile), then ends each connection with QUIT, or at once if it is
 * not up (a QUIT to a Redis that is away would wait for it), and reports a QUIT that failed; then
 * MQEmitter's own close. A publish that comes once the QUIT is on its way fails at once, as it
 * would once closed (Aedes passes the error on; durable ingest routes the message again at the next
 * start). Emits otherwise keep their callbacks and errors as before.
 * Breaks: broker/fanout-close.test.ts; in the cluster, exit 1 on SIGTERM under load (test/chaos-cluster.test.ts's SIGTERM check).
 */
export function finishFanoutOnClose(mq: object, onQuitFailed: (err: Error, connection: 'sub' | 'pub') => void): void {
  const fanout = mq as FanoutInternals;
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const emit = fanout.emit.bind(fanout);
  let quitting = false;
  fanout.emit = (msg, done) => {
    // Behind a QUIT it would never be answered (and would make ioredis reject the QUIT): it fails now, as once closed.
    if (quitting) return (done ?? fanout._onError)(new Error('mqemitter-redis is closed'));
    inFlight++;
    return emit(msg, (err) => {
      if (--inFlight === 0) drained?.();
      (done ?? fanout._onError)(err);
    });
  };
  const end = (conn: Redis, name: 'sub' | 'pub') => {
    if (conn.status !== 'ready') {
      conn.disconnect();
      return Promise.resolve();
    }
    return conn.quit().then(
      () => undefined,
      (err: Error) => {
        onQuitFailed(err, name);
        conn.disconnect();
      },
    );
  };
  fanout.close = (cb = () => {}) => {
    if (fanout.closed || fanout.closing) return cb();
    fanout.closing = true;
    const idle =
      inFlight === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            drained = resolve;
            setTimeout(resolve, FANOUT_DRAIN_MS).unref();
          });
    void idle
      .then(() => {
        quitting = true;
        return Promise.all([end(fanout.subConn, 'sub'), end(fanout.pubConn, 'pub')]);
      })
      .then(() => fanout._close(cb));
    return fanout;
  };
}

/**
 * Keeps the notices' channel from mqemitter-redis (the fan-out between nodes): a client's `#`
 * becomes a pattern subscription to every Redis channel there, and a notice, which is not one of its
 * messages, fails its decoding with an assertion that ended the node. The channel goes on the list
 * of channels it ignores (where it keeps Redis Sentinel's; mqemitter-redis 7.2.1, no option sets
 * it); a version without that list is refused at start rather than left to crash on the first `#`.
 * Breaks: test/broker-declared-groups.test.ts (a `#` reader on each of two nodes).
 */
export function ignoreInFanout(mq: object, channel: string): void {
  const ignored = (mq as { _ignoredTopicsSet?: unknown })._ignoredTopicsSet;
  if (!(ignored instanceof Set)) throw new Error('mqemitter-redis has no _ignoredTopicsSet: a client subscribed to # would crash this node on the group notices');
  ignored.add(channel);
}
