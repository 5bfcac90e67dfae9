// The one way a process talks to the broker: connect with a stable client id, subscribe again on
// every connect, publish events with QoS 1, and consume messages several at a time, each decoded
// against its event's schema or dead-lettered with the reason (eventRoute), acknowledging each one
// only after its handler has made the effect durable (deferred-acks.ts says how, given that
// mqtt.js would acknowledge each message as soon as its handler returns, one at a time).
//
// A consuming connection stops reading while the consumer is full, so a handler that awaited a
// PUBACK on its own connection could wait forever: that PUBACK would be queued behind the messages
// in hand. Hence every process publishes on a separate connection from the one it consumes on (see
// `publisher` below).
import { createHash } from 'node:crypto';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { Gauge, Histogram, type Registry } from 'prom-client';
import { z } from 'zod';
import type { DB } from './db.js';
import { deferAcks, type Delivery } from './deferred-acks.js';
import { committed } from './group-commit.js';
import type { Logger } from './log.js';
import { coalesceWrites } from './wire.js';
import { MAX_EVENT_BYTES, createEvent, decodeEvent, deriveId, topicMatches, type CloudEvent, type EventDefinition } from './events.js';
import { consumeInTrace } from './tracing.js';
import { DEAD_LETTER_PAYLOAD_BYTES, deadLetter, deadLetterTopic } from './topics.js';

export type { MqttClient };

export interface ConnectOptions {
  url: string;
  clientId: string;
  /** false keeps the session (subscriptions and queued QoS 1 messages) while the process is away. */
  clean?: boolean;
  username?: string | undefined;
  password?: string | undefined;
  log: Logger;
  keepaliveSeconds?: number;
}

const noLog = () => {};

export function connectMqtt({ url, clientId, clean = false, username, password, log, keepaliveSeconds = 30 }: ConnectOptions): MqttClient {
  const options: IClientOptions = {
    clientId,
    clean,
    protocolVersion: 4,
    keepalive: keepaliveSeconds,
    reconnectPeriod: 1000,
    connectTimeout: 5000,
    // We subscribe ourselves on every connect (below): mqtt.js's resubscribe skips topics whose
    // SUBACK it never saw, and a broker that lost our session would otherwise leave us deaf.
    resubscribe: false,
    // mqtt.js logs through the debug package a dozen times per packet, and each of those calls
    // makes an array of its arguments even when no namespace is enabled (about 6 % of what a worker
    // allocates per record, measured): with DEBUG unset nothing can be enabled, and a no-op takes its
    // place. Any DEBUG at all (even one naming other namespaces) leaves mqtt.js its own.
    ...(process.env.DEBUG ? {} : { log: noLog }),
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
  };
  const client = mqtt.connect(url, options);
  let wasConnected = false;
  client.on('connect', (connack) => {
    coalesceWrites(client.stream);
    log.info({ clientId, sessionPresent: connack.sessionPresent, reconnect: wasConnected }, 'mqtt connected');
    wasConnected = true;
  });
  client.on('offline', () => log.warn({ clientId }, 'mqtt offline, reconnecting'));
  client.on('error', (err) => log.warn({ clientId, err: err.message }, 'mqtt error'));
  return client;
}

/** Subscribes now and again on every (re)connect; refusals by the broker are logged, not ignored. */
export function subscribe(client: MqttClient, filters: string[], log: Logger): void {
  const run = () => {
    client.subscribe(filters, { qos: 1 }, (err, granted) => {
      if (err) return log.warn({ err: err.message, filters }, 'subscribe failed; will retry on reconnect');
      for (const g of granted ?? []) {
        if (g.qos === 128) log.error({ filter: g.topic }, 'subscription refused by the broker');
      }
      log.info({ filters }, 'subscribed');
    });
  };
  client.on('connect', run);
  if (client.connected) run();
}

/** Publishes an event with QoS 1 (resolves on the PUBACK); a string is an event already serialized. */
export async function publishEvent(
  client: MqttClient,
  topic: string,
  event: CloudEvent | string,
  { retain = false }: { retain?: boolean } = {},
): Promise<void> {
  await client.publishAsync(topic, typeof event === 'string' ? event : JSON.stringify(event), { qos: 1, retain });
}

/** Thrown by a handler for a message that can never succeed: it goes to the dead letters, with `reason`. */
export class PermanentFailure extends Error {
  constructor(
    readonly reason: string,
    readonly attempts?: number,
    /**
     * Runs once the dead letter is durable (PUBACKed) and before the message is acknowledged: what
     * announces the parking (an order's parked event) then never goes out without its dead letter.
     * If it fails, the message stays in hand and it is tried again after a pause (the dead letter is
     * not published a second time).
     */
    readonly afterDeadLetter?: () => Promise<void>,
  ) {
    super(reason);
  }
}

/** A route whose effect is asynchronous (an ERP call, a publish): several run at once. */
export interface HandleRoute {
  /** A topic filter, without the `$share/<group>/` prefix. */
  filter: string;
  handle(topic: string, payload: Buffer, packet: IPublishPacket): Promise<void>;
}

/**
 * A route whose whole effect is a write to the consumer's own database (ConsumeOptions.db): it runs
 * synchronously, and the effects of the messages in hand at once commit in one transaction.
 */
export interface ApplyRoute {
  filter: string;
  apply(topic: string, payload: Buffer, packet: IPublishPacket): void;
}

export type Route = HandleRoute | ApplyRoute;

/** What a consumer does with one event, given it decoded: write it to its database, or act on it. */
export type EventEffect<T> =
  | { apply(event: CloudEvent<T>, topic: string): void }
  | { handle(event: CloudEvent<T>, topic: string): Promise<void> };

/**
 * The one way to consume an event: a route on the event's topic that parses each payload against
 * its CloudEvent envelope and data schema (lib/events.ts decodeEvent) and hands the typed event to
 * the effect; a payload that does not decode fails to the dead letters with the reason.
 */
export function eventRoute<T extends z.ZodType>(def: EventDefinition<T>, effect: { apply(event: CloudEvent<z.infer<T>>, topic: string): void }): ApplyRoute;
export function eventRoute<T extends z.ZodType>(def: EventDefinition<T>, effect: { handle(event: CloudEvent<z.infer<T>>, topic: string): Promise<void> }): HandleRoute;
export function eventRoute<T extends z.ZodType>(def: EventDefinition<T>, effect: EventEffect<z.infer<T>>): Route {
  const decode = (payload: Buffer) => {
    const decoded = decodeEvent(def, payload);
    if (!decoded.ok) throw new PermanentFailure(decoded.reason);
    return decoded.event;
  };
  // The effect runs inside the event's trace (lib/tracing.ts): its logs, events and calls carry it.
  if ('apply' in effect)
    return {
      filter: def.topic,
      apply: (topic, payload) => {
        const event = decode(payload);
        consumeInTrace(event, topic, () => effect.apply(event, topic));
      },
    };
  return {
    filter: def.topic,
    handle: async (topic, payload) => {
      const event = decode(payload);
      await consumeInTrace(event, topic, () => effect.handle(event, topic));
    },
  };
}

/** Settings of every consuming process: how many messages it holds at once. */
export const consumerEnv = {
  /** Messages a consumer has in hand at once (per workflow in a worker): handled concurrently, each acknowledged when done. */
  CONSUMER_CONCURRENCY: z.coerce.number().int().min(1).max(1024).default(128),
};

export interface ConsumeOptions {
  /** Names the consumer in logs, metrics and its dead-letter topic. */
  consumer: string;
  /** The connection dead letters are published on: never the consuming one (see the top of this file). */
  publisher: MqttClient;
  source: string;
  log: Logger;
  routes: Route[];
  /** Messages in hand at once (default 32); the broker's in-flight window should allow as many. */
  concurrency?: number;
  /** The database `apply` routes write to: messages in hand together commit in one transaction. */
  db?: DB;
  /** Where to export the consumer's concurrency and messages in hand. */
  registry?: Registry;
  /** Called after each message with its outcome, e.g. for metrics. */
  onOutcome?: (outcome: 'ok' | 'deadletter' | 'retry', topic: string) => void;
}

/** A consuming connection's handling, for a graceful stop. */
export interface Consumption {
  /**
   * Stops taking messages and waits (bounded) for the ones in hand to finish and be acknowledged.
   * Messages that arrive meanwhile are never acknowledged: when the connection closes, the broker
   * hands them to another member. Closing without draining would hand back messages whose work is
   * still running, so two processes would do it at once.
   */
  drain(timeoutMs?: number): Promise<void>;
}

interface InHand {
  delivery: Delivery;
  topic: string;
  payload: Buffer;
  route: Route | undefined;
  /** Runs of its handler that failed because a connection was lost (see CONNECTION_LOST). */
  lostConnection?: number;
  /** Its dead letter is published (what follows it, the announcement and the ack, may still be to do). */
  deadLettered?: boolean;
}

/**
 * What mqtt.js answers a publish with when its connection closed before the broker acknowledged it
 * (a broker node stopping, say): the broker was away for a moment, the message is not at fault.
 * A handler failing with it runs again, after a pause, rather than dead-lettering its message.
 */
const CONNECTION_LOST = /^(Connection closed|client disconnecting)$/;
/** Pauses before each new run: about 7 s in all, then the dead letters as for any other failure. */
const CONNECTION_LOST_PAUSES_MS = [250, 500, 1000, 2000, 3000];

const consumerGauges = new WeakMap<Registry, { concurrency: Gauge<'consumer'>; inHand: Gauge<'consumer'>; batch: Histogram<'consumer'> }>();

function gaugesOf(registry: Registry) {
  let g = consumerGauges.get(registry);
  if (!g) {
    const registers = [registry];
    g = {
      concurrency: new Gauge({ name: 'mqtt_consumer_concurrency', help: 'Messages a consumer may hold at once', labelNames: ['consumer'] as const, registers }),
      inHand: new Gauge({ name: 'mqtt_consumer_in_hand', help: 'Messages a consumer holds now (taken, not yet acknowledged)', labelNames: ['consumer'] as const, registers }),
      batch: new Histogram({
        name: 'mqtt_consumer_commit_messages',
        help: 'Messages whose effects committed in one database transaction',
        labelNames: ['consumer'] as const,
        buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
        registers,
      }),
    };
    consumerGauges.set(registry, g);
  }
  return g;
}

/**
 * Routes every incoming message to its handler, holding up to `concurrency` messages at once. A
 * message is acknowledged once its effect is durable: when its `handle` resolves, or when the
 * transaction holding its `apply` commits. A handler that throws PermanentFailure (or anything
 * unexpected) has the message sent to the dead letters with the reason, then acknowledged: a poison
 * message never blocks its group. If even the dead letter cannot be published (or what the handler
 * announces after it, PermanentFailure's afterDeadLetter), the message stays in hand and that is
 * tried again after a pause; a consumer stopping leaves it unacknowledged for the broker to deliver
 * again. A handler that failed only because mqtt.js lost a
 * connection under it (CONNECTION_LOST) runs again after a pause instead (handlers are idempotent).
 */
export function consume(client: MqttClient, { consumer, publisher, source, log, routes, concurrency = 32, db, registry, onOutcome }: ConsumeOptions): Consumption {
  let draining = false;
  let inHand = 0;
  /** Reader releases held back while the consumer is full. */
  const held: (() => void)[] = [];
  let idle: (() => void)[] = [];
  let batch: InHand[] = [];
  const gauges = registry ? gaugesOf(registry) : undefined;
  gauges?.concurrency.set({ consumer }, concurrency);
  const inHandGauge = gauges?.inHand.labels({ consumer });
  const batchSize = gauges?.batch.labels({ consumer });
  // One savepoint per message inside the batch's transaction: a message whose apply throws leaves no trace.
  const applyOne = db?.transaction((m: InHand) => (m.route as ApplyRoute).apply(m.topic, m.payload, m.delivery.packet));

  const finished = () => {
    inHand--;
    inHandGauge?.set(inHand);
    held.shift()?.();
    if (inHand === 0) for (const wake of idle.splice(0)) wake();
  };
  const succeed = (m: InHand) => {
    onOutcome?.('ok', m.topic);
    m.delivery.ack();
    finished();
  };
  const fail = async (m: InHand, err: unknown, tries = 0): Promise<void> => {
    const failure = err instanceof PermanentFailure ? err : undefined;
    const reason = failure?.reason ?? `handler error: ${err instanceof Error ? err.message : String(err)}`;
    if (!failure && tries === 0) log.error({ err, topic: m.topic }, 'handler failed unexpectedly');
    try {
      if (!m.deadLettered) await publishDeadLetter(m, failure, reason);
      await failure?.afterDeadLetter?.();
      onOutcome?.('deadletter', m.topic);
      m.delivery.ack();
    } catch (dlErr) {
      // Kept in hand and tried again (the dead letter only if it is not out yet); when stopping, left
      // unacknowledged for the broker to deliver again.
      const pause = draining ? undefined : CONNECTION_LOST_PAUSES_MS[Math.min(tries, CONNECTION_LOST_PAUSES_MS.length - 1)];
      log.error({ err: dlErr, topic: m.topic, deadLettered: m.deadLettered === true }, pause === undefined ? 'could not dead-letter message (or announce it); leaving it unacknowledged' : 'could not dead-letter message (or announce it); trying again');
      onOutcome?.('retry', m.topic);
      if (pause !== undefined) {
        setTimeout(() => void fail(m, err, tries + 1), pause);
        return;
      }
    }
    finished();
  };
  const publishDeadLetter = async (m: InHand, failure: PermanentFailure | undefined, reason: string) => {
    const input = eventIdOf(m.payload);
    const event = createEvent(
      deadLetter,
      {
        consumer,
        topic: m.topic,
        reason,
        ...(failure?.attempts === undefined ? {} : { attempts: failure.attempts }),
        ...input,
        payload: m.payload.subarray(0, DEAD_LETTER_PAYLOAD_BYTES).toString('utf8'),
        payloadBytes: m.payload.length,
      },
      // A payload that is not an event (it has no id) gets a letter named after its bytes: if the
      // broker dies between the letter's PUBACK and the message's, the message comes again and its
      // letter is the same one, kept once by the store. (An event's letters keep their own ids: a
      // replayed event that fails again needs a new letter to be replayed again.)
      { source, ...(input.eventId === undefined ? { id: deriveId('dead-letter', consumer, m.topic, createHash('sha256').update(m.payload).digest('hex')) } : {}) },
    );
    await publishEvent(publisher, deadLetterTopic(consumer), event);
    m.deadLettered = true;
    log.warn({ topic: m.topic, reason }, 'message sent to dead letters');
  };
  const check = (m: InHand) => {
    if (!m.route) throw new PermanentFailure(`no handler for topic ${m.topic}`);
    if (m.payload.length > MAX_EVENT_BYTES) throw new PermanentFailure(`payload of ${m.payload.length} bytes exceeds ${MAX_EVENT_BYTES}`);
  };

  /** Applies the messages gathered this turn in one transaction, then acknowledges them. */
  const commitBatch = () => {
    const items = batch;
    batch = [];
    const errors = new Map<InHand, unknown>();
    const applyAll = () => {
      errors.clear();
      for (const m of items) {
        try {
          check(m);
          if (applyOne) applyOne(m);
          else (m.route as ApplyRoute).apply(m.topic, m.payload, m.delivery.packet);
        } catch (err) {
          errors.set(m, err);
        }
      }
    };
    try {
      if (db && items.length > 1) db.transaction(applyAll)();
      else applyAll();
    } catch (err) {
      // The batch could not commit: each message alone, so that a failure is its own.
      log.warn({ err, messages: items.length }, 'batch commit failed; applying its messages one by one');
      applyAll();
    }
    batchSize?.observe(items.length);
    for (const m of items) if (errors.has(m)) void fail(m, errors.get(m));
    const done = items.filter((m) => !errors.has(m));
    if (done.length === 0) return;
    // With group commit (lib/group-commit.ts) the batch commits at the end of the turn: only then ack.
    (db ? committed(db) : Promise.resolve()).then(
      () => done.forEach(succeed),
      (err: unknown) => {
        // Not stored: never acknowledged. A new connection makes the broker deliver them again.
        log.error({ err, messages: done.length }, 'commit failed; reconnecting so that the broker delivers these messages again');
        done.forEach(finished);
        client.stream.destroy();
      },
    );
  };

  const start = (m: InHand) => {
    if (m.route && 'apply' in m.route) {
      if (batch.length === 0) setImmediate(commitBatch);
      batch.push(m);
      return;
    }
    const route = m.route;
    Promise.resolve()
      .then(() => {
        check(m);
        return route!.handle(m.topic, m.payload, m.delivery.packet);
      })
      .then(
        () => succeed(m),
        (err: unknown) => {
          if (!(err instanceof Error) || !CONNECTION_LOST.test(err.message)) return fail(m, err);
          if (draining) {
            // Stopping: unacknowledged, the broker hands it to another member or back to this one.
            log.warn({ topic: m.topic, err: err.message }, 'handler lost its connection while stopping; message left unacknowledged');
            onOutcome?.('retry', m.topic);
            return finished();
          }
          const pause = CONNECTION_LOST_PAUSES_MS[m.lostConnection ?? 0];
          if (pause === undefined) return fail(m, err);
          m.lostConnection = (m.lostConnection ?? 0) + 1;
          log.warn({ topic: m.topic, err: err.message, run: m.lostConnection }, 'handler lost its connection; running it again');
          onOutcome?.('retry', m.topic);
          setTimeout(() => start(m), pause);
        },
      );
  };

  deferAcks(client, (delivery, readOn) => {
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      readOn();
    };
    if (draining) return release();
    inHand++;
    inHandGauge?.set(inHand);
    const topic = delivery.packet.topic;
    const payload = Buffer.isBuffer(delivery.packet.payload) ? delivery.packet.payload : Buffer.from(delivery.packet.payload);
    start({ delivery, topic, payload, route: routes.find((r) => topicMatches(r.filter, topic)) });
    // Room for another: read on now; full: read on when one is done (TCP carries the wait back to the broker).
    if (inHand < concurrency) release();
    else held.push(release);
  });
  return {
    async drain(timeoutMs = 8000) {
      draining = true;
      // Let the connection read on (pings, and messages that will not be taken).
      for (const release of held.splice(0)) release();
      if (inHand === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise<void>((resolve) => idle.push(resolve)), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
      idle = [];
      // Acknowledgements of this turn leave before the connection is closed.
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

/** The original's CloudEvent id, if it has a readable one: a replay publishes it under the same id. */
function eventIdOf(payload: Buffer): { eventId?: string } {
  if (payload.length > MAX_EVENT_BYTES) return {};
  try {
    const id = (JSON.parse(payload.toString('utf8')) as { id?: unknown } | null)?.id;
    return typeof id === 'string' && id.length > 0 && id.length <= 256 ? { eventId: id } : {};
  } catch {
    return {};
  }
}

export function closeMqtt(client: MqttClient, timeoutMs = 3000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => client.end(true, () => resolve()), timeoutMs);
    client.end(false, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export type { EventDefinition };
