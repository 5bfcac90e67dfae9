// The one way a process talks to the broker: connect with a stable client id, subscribe again on
// every connect, publish events with QoS 1, and consume messages acknowledging each one only after
// its handler has made the effect durable (mqtt.js sends the PUBACK when handleMessage calls back).
//
// mqtt.js handles a connection's incoming packets one at a time and waits for handleMessage, so a
// handler that awaited a PUBACK on its own connection would wait forever: that PUBACK is queued
// behind the message being handled. Hence every process publishes on a separate connection from
// the one it consumes on (see `publisher` below).
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from './log.js';
import { MAX_EVENT_BYTES, createEvent, topicMatches, type CloudEvent, type EventDefinition } from './events.js';
import { deadLetter, deadLetterTopic } from './topics.js';

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
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
  };
  const client = mqtt.connect(url, options);
  let wasConnected = false;
  client.on('connect', (connack) => {
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

export async function publishEvent(
  client: MqttClient,
  topic: string,
  event: CloudEvent,
  { retain = false }: { retain?: boolean } = {},
): Promise<void> {
  await client.publishAsync(topic, JSON.stringify(event), { qos: 1, retain });
}

/** Thrown by a handler for a message that can never succeed: it goes to the dead letters, with `reason`. */
export class PermanentFailure extends Error {
  constructor(
    readonly reason: string,
    readonly attempts?: number,
  ) {
    super(reason);
  }
}

export interface Route {
  /** A topic filter, without the `$share/<group>/` prefix. */
  filter: string;
  handle(topic: string, payload: Buffer, packet: IPublishPacket): Promise<void>;
}

export interface ConsumeOptions {
  /** Names the consumer in logs and in its dead-letter topic. */
  consumer: string;
  /** The connection dead letters are published on: never the consuming one (see the top of this file). */
  publisher: MqttClient;
  source: string;
  log: Logger;
  routes: Route[];
  /** Called after each message with its outcome, e.g. for metrics. */
  onOutcome?: (outcome: 'ok' | 'deadletter' | 'retry', topic: string) => void;
}

/** A consuming connection's handling, for a graceful stop. */
export interface Consumption {
  /**
   * Stops taking messages and waits (bounded) for the one in hand to finish and be acknowledged.
   * Messages that arrive meanwhile are never acknowledged: when the connection closes, the broker
   * hands them to another member. Closing without draining would hand back a message whose work is
   * still running, so two processes would do it at once.
   */
  drain(timeoutMs?: number): Promise<void>;
}

/**
 * Routes every incoming message to its handler. A handler that returns has made its effect durable,
 * so the message is acknowledged. One that throws PermanentFailure (or anything unexpected) has the
 * message sent to the dead letters with the reason, then acknowledged: a poison message never
 * blocks its group. If even the dead letter cannot be published, the message stays unacknowledged
 * and the broker delivers it again.
 */
export function consume(client: MqttClient, { consumer, publisher, source, log, routes, onOutcome }: ConsumeOptions): Consumption {
  let draining = false;
  let busy = 0;
  let idle: (() => void)[] = [];
  const finished = () => {
    busy--;
    if (busy === 0) for (const wake of idle.splice(0)) wake();
  };
  client.handleMessage = (packet, whenDone) => {
    if (draining) return;
    busy++;
    const done = (err?: Error) => {
      whenDone(err);
      finished();
    };
    const topic = packet.topic;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const route = routes.find((r) => topicMatches(r.filter, topic));
    const run = async () => {
      if (!route) throw new PermanentFailure(`no handler for topic ${topic}`);
      if (payload.length > MAX_EVENT_BYTES) throw new PermanentFailure(`payload of ${payload.length} bytes exceeds ${MAX_EVENT_BYTES}`);
      await route.handle(topic, payload, packet);
    };
    run().then(
      () => {
        onOutcome?.('ok', topic);
        done();
      },
      async (err: unknown) => {
        const failure = err instanceof PermanentFailure ? err : undefined;
        const reason = failure?.reason ?? `handler error: ${err instanceof Error ? err.message : String(err)}`;
        if (!failure) log.error({ err, topic }, 'handler failed unexpectedly');
        try {
          const event = createEvent(
            deadLetter,
            {
              consumer,
              topic,
              reason,
              ...(failure?.attempts === undefined ? {} : { attempts: failure.attempts }),
              payload: payload.subarray(0, 4096).toString('utf8'),
              payloadBytes: payload.length,
            },
            { source },
          );
          await publishEvent(publisher, deadLetterTopic(consumer), event);
          log.warn({ topic, reason }, 'message sent to dead letters');
          onOutcome?.('deadletter', topic);
          done();
        } catch (dlErr) {
          log.error({ err: dlErr, topic }, 'could not dead-letter message; leaving it unacknowledged');
          onOutcome?.('retry', topic);
          done(dlErr as Error);
        }
      },
    );
  };
  return {
    async drain(timeoutMs = 8000) {
      draining = true;
      if (busy === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise<void>((resolve) => idle.push(resolve)), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
      idle = [];
    },
  };
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
