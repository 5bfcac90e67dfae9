// Clients that record what a crash test needs to judge MQTT QoS 1 delivery across broker nodes:
// a publisher that knows which of its messages the broker acknowledged (PUBACK), and members and
// subscribers that note each message with the connection it came on, and whether that connection
// later broke (its acknowledgements may have died with it). `deliveryFaults` is the judgement.
import mqtt, { type MqttClient } from 'mqtt';
import { sleep } from '../../lib/shutdown.js';
import { connectClient } from '../../harness/mqtt.js';
import { withinDeadline } from '../../harness/process.js';

/** How long a member waits for its SUBACK. */
const SUBACK_MS = 30_000;

/** Where a client connects: a broker node's MQTT URL, and its name for the report. */
export interface Node {
  name: string;
  url: string;
  /** The node's log lines so far (JSON), quoted when it fails a client. */
  logs?: readonly string[];
}

/** What a node said at warn level or above, its last few lines, for a failure's message. */
const warnings = (node: Node): string => {
  const lines = (node.logs ?? []).filter((l) => /"level":(4|5|6)\d/.test(l)).slice(-8);
  return lines.length > 0 ? `; ${node.name} warned:\n${lines.join('\n')}` : `; ${node.name} logged no warning`;
};

export interface Login {
  username: string;
  password: string;
}

/** One network connection of a client: it broke if it closed before the client was ended on purpose. */
export interface Connection {
  node: string;
  broken: boolean;
}

export interface Delivery {
  message: string;
  client: string;
  connection: Connection;
  /** When it arrived (Date.now()). */
  at: number;
}

/**
 * What the QoS 1 contract forbids in `deliveries` to one group (or to one subscriber), given the
 * messages the broker had acknowledged to their publishers:
 * - an acknowledged message never delivered (lost);
 * - an acknowledged message delivered again after a delivery whose acknowledgement surely reached
 *   the broker. A delivery on a connection that stayed up was acknowledged to a live node (the
 *   clients acknowledge as they go), so it must be the last one. One on a connection that broke may
 *   have lost its acknowledgement with it: delivering that message again, to the same client or
 *   another member, is the at-least-once redelivery QoS 1 allows, and is not counted. A message the
 *   broker never acknowledged to its publisher is one the publisher would send again: it may arrive
 *   any number of times;
 * - a delivered message nobody published.
 */
export function deliveryFaults(
  deliveries: readonly Delivery[],
  acknowledged: Iterable<string>,
  published: ReadonlySet<string>,
  /** Deliveries whose acknowledgement may not have been recorded: by default those on a connection that broke. */
  uncertain: (d: Delivery) => boolean = (d) => d.connection.broken,
): { lost: string[]; duplicated: string[]; unknown: string[] } {
  const acked = new Set(acknowledged);
  const byMessage = new Map<string, Delivery[]>();
  for (const d of deliveries) byMessage.set(d.message, [...(byMessage.get(d.message) ?? []), d]);
  const lost = [...acked].filter((m) => !byMessage.has(m));
  const duplicated = [...byMessage].filter(([m, ds]) => acked.has(m) && ds.slice(0, -1).some((d) => !uncertain(d))).map(([m, ds]) => `${m} → ${ds.map((d) => `${d.client}@${d.connection.node}${d.connection.broken ? ' (broke)' : ''}`).join(', ')}`);
  const unknown = [...byMessage.keys()].filter((m) => !published.has(m));
  return { lost, duplicated, unknown };
}

interface ClientOptions {
  clientId: string;
  login: Login;
  /** Persistent session (members: clean=false, the same id on every connection). */
  clean: boolean;
  /** What to subscribe to on the first connection (a persistent session keeps it afterwards). */
  filter: string;
  /** Acknowledge each message at once (0), after a delay in ms, or never ('hold': the in-flight window fills). */
  ack?: number | 'hold';
  /** Where to connect again when a connection breaks (none: stay away). */
  next?: () => Node;
}

/** A subscriber (a shared-group member or a normal one) recording every message it is given. */
export class Subscriber {
  readonly connections: Connection[] = [];
  #client: MqttClient | undefined;
  #ended = false;
  #subscribed = false;
  /** How it acknowledges from now on (see ClientOptions.ack). */
  ack: number | 'hold';

  constructor(
    private readonly opts: ClientOptions,
    /** Shared between the members of one group: what the group received. */
    readonly deliveries: Delivery[] = [],
  ) {
    this.ack = opts.ack ?? 0;
  }

  get id(): string {
    return this.opts.clientId;
  }

  /** The connection in use now (or the last one). */
  get connection(): Connection | undefined {
    return this.connections.at(-1);
  }

  /** Messages received on connections to `node` or on the current one. */
  received(where: (c: Connection) => boolean): number {
    return this.deliveries.filter((d) => d.client === this.id && where(d.connection)).length;
  }

  async connect(node: Node): Promise<void> {
    const connection: Connection = { node: node.name, broken: false };
    const client = mqtt.connect(node.url, {
      clientId: this.opts.clientId,
      clean: this.opts.clean,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      ...this.opts.login,
    });
    // Messages a persistent session had queued can arrive with the CONNACK: recorded from the first packet.
    client.handleMessage = (packet, done) => {
      this.deliveries.push({ message: packet.payload.toString(), client: this.id, connection, at: Date.now() });
      const ack = this.ack;
      if (ack === 'hold') return;
      if (ack > 0) setTimeout(() => done(), ack);
      else done();
    };
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
      client.once('close', () => reject(new Error(`${this.id}: connection to ${node.name} closed before CONNACK`)));
    }).catch((err: unknown) => {
      client.end(true);
      throw err;
    });
    client.on('error', () => {});
    this.#client = client;
    this.connections.push(connection);
    client.once('close', () => {
      if (this.#ended) return;
      connection.broken = true;
      if (this.opts.next) void this.#follow();
    });
    if (!this.#subscribed || this.opts.clean) {
      // Bounded: a SUBACK that never comes (a node whose fan-out lost its own subscription broadcast)
      // fails the test with the node's name instead of holding the test file until its time limit.
      await withinDeadline(client.subscribeAsync(this.opts.filter, { qos: 1 }), Date.now() + SUBACK_MS, `${this.id}: no SUBACK from ${node.name} within ${SUBACK_MS} ms`).catch((err: unknown) => {
        throw new Error(`${err instanceof Error ? err.message : String(err)}${warnings(node)}`);
      });
      this.#subscribed = true;
    }
  }

  /** Connects again, to wherever `next` says, until it succeeds or the client is ended. */
  async #follow(): Promise<void> {
    while (!this.#ended) {
      await sleep(200); // a reconnect period, as mqtt.js would wait
      try {
        await this.connect(this.opts.next!());
        return;
      } catch {
        // that node is not there (yet): try again
      }
    }
  }

  async end(): Promise<void> {
    this.#ended = true;
    await this.#client?.endAsync(true).catch(() => {});
  }
}

/**
 * A publisher streaming numbered QoS 1 messages (`<name>-<n>`) with a bounded number in flight,
 * until `stop()` or `max`. It remembers what it sent and what the broker acknowledged; when its
 * connection breaks, what was in flight stays unacknowledged (the broker may or may not have it),
 * and with `next` it carries on from another connection with new numbers.
 */
export class Publisher {
  readonly sent = new Set<string>();
  readonly acknowledged = new Set<string>();
  /** The node that acknowledged each message. */
  readonly acknowledgedBy = new Map<string, string>();
  #n = 0;
  #client: MqttClient | undefined;
  #running = false;
  #ended = false;
  #outstanding = 0;
  broken = 0;

  constructor(
    private readonly opts: { name: string; clientId: string; login: Login; topic: string; inflight?: number; max?: number; next?: () => Node },
  ) {}

  #node = '';

  async connect(node: Node): Promise<void> {
    const client = await connectClient(node.url, { clientId: this.opts.clientId, clean: true, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, ...this.opts.login });
    client.on('error', () => {});
    this.#client = client;
    this.#node = node.name;
    this.#outstanding = 0;
    client.once('close', () => {
      if (this.#ended) return;
      this.broken++;
      if (this.#client === client) this.#client = undefined;
      if (this.opts.next) void this.#follow();
    });
    if (this.#running) this.#pump();
  }

  async #follow(): Promise<void> {
    while (!this.#ended && !this.#client) {
      await sleep(200);
      try {
        await this.connect(this.opts.next!());
      } catch {
        // not there yet
      }
    }
  }

  /** Starts streaming; resolves at once. */
  start(): void {
    this.#running = true;
    this.#pump();
  }

  get done(): boolean {
    return this.#n >= (this.opts.max ?? Infinity);
  }

  #pump(): void {
    const client = this.#client;
    const node = this.#node;
    while (this.#running && client && !client.disconnected && this.#outstanding < (this.opts.inflight ?? 16) && !this.done) {
      const message = `${this.opts.name}-${this.#n++}`;
      this.sent.add(message);
      this.#outstanding++;
      client.publish(this.opts.topic, message, { qos: 1 }, (err) => {
        if (client !== this.#client) return; // a broken connection's late answer
        this.#outstanding--;
        if (!err) {
          this.acknowledged.add(message);
          this.acknowledgedBy.set(message, node);
        }
        this.#pump();
      });
    }
  }

  /** Stops sending; resolves once what is in flight on a live connection is answered (or it breaks). */
  async stop(): Promise<void> {
    this.#running = false;
    while (this.#client && this.#outstanding > 0) await sleep(20);
  }

  async end(): Promise<void> {
    this.#ended = true;
    this.#running = false;
    await this.#client?.endAsync(true).catch(() => {});
  }
}
