// A process's start-up and shutdown, written once: given its configuration (lib/config.ts), its
// logger and metrics, its MQTT connections, outbox relay, consumers and live figures, serving its
// app with the "<name> listening" line, and the stop steps in the house order on SIGTERM: figures
// stopped → HTTP closed → consumers drained (what is in hand is finished and acknowledged) →
// outbox relays stopped → MQTT connections closed → the process's own last steps (databases, lease
// stores). Each main.ts keeps only what is its own.
import type { DB } from './db.js';
import { serveApp, type Served } from './http.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { closeMqtt, connectMqtt, consume, subscribe, type ConsumeOptions, type Consumption, type MqttClient } from './mqtt.js';
import { OutboxRelay, type RelayOptions } from './outbox.js';
import { onShutdown } from './shutdown.js';
import { StatsPublisher, type StatsName } from './stats.js';
import { startTracing, type Tracing } from './tracing.js';

/** What the service reads of its configuration; each process adds its own settings. */
export interface ServiceConfig {
  LOG_LEVEL: string;
  HTTP_HOST: string;
  HTTP_PORT: number;
  MQTT_URL: string;
  MQTT_USERNAME?: string | undefined;
  MQTT_PASSWORD?: string | undefined;
  MQTT_CLIENT_ID?: string | undefined;
  /** Present in processes that consume (lib/mqtt.ts consumerEnv). */
  CONSUMER_CONCURRENCY?: number;
}

export interface ConsumerOptions extends Pick<ConsumeOptions, 'consumer' | 'publisher' | 'source' | 'routes' | 'db' | 'onOutcome'> {
  /** Topic filters to subscribe to (with `$share/<group>/` for a shared group). */
  filters: string[];
  /** The consuming connection's client id; default the service's client id (a persistent session). */
  clientId?: string;
}

export interface Consumer {
  client: MqttClient;
  consumption: Consumption;
  /** Resolves at the broker's first SUBACK on this connection: the subscription exists from then on. */
  subscribed: Promise<void>;
}

export interface StopSteps {
  /** Run first, before the HTTP server closes (e.g. open event streams that would hold it). */
  first?: () => Promise<void> | void;
  /** Run last, after every MQTT connection closed: databases, lease stores, other clients. */
  last?: () => Promise<void> | void;
}

export class Service<C extends ServiceConfig> {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly #connections: MqttClient[] = [];
  readonly #consumptions: Consumption[] = [];
  readonly #relays: OutboxRelay[] = [];
  readonly #stats: StatsPublisher[] = [];
  #http: Served | undefined;
  readonly #tracing: Tracing;

  /** Stable client-id prefix: MQTT_CLIENT_ID, else `clientId`, else the process's name. */
  readonly clientId: string;

  /** `config` is the process's own, loaded with lib/config.ts (commonEnv and mqttEnv among it). */
  constructor(
    readonly name: string,
    readonly config: C,
    { clientId = name }: { clientId?: string } = {},
  ) {
    this.clientId = config.MQTT_CLIENT_ID ?? clientId;
    this.log = createLogger(name, config.LOG_LEVEL);
    this.metrics = createMetrics(name);
    // Trace context always flows; spans are exported only when OTEL_EXPORTER_OTLP_ENDPOINT asks.
    this.#tracing = startTracing(name);
  }

  /** An MQTT connection with the process's login, closed at shutdown. */
  connect(clientId: string, { clean = false } = {}): MqttClient {
    const { MQTT_URL: url, MQTT_USERNAME: username, MQTT_PASSWORD: password } = this.config;
    const client = connectMqtt({ url, username, password, log: this.log, clientId, clean });
    this.#connections.push(client);
    return client;
  }

  /** The connection a process publishes on (`<clientId>-pub`, clean session); never the consuming one (see lib/mqtt.ts). */
  publisher(): MqttClient {
    return this.connect(`${this.clientId}-pub`, { clean: true });
  }

  /** A consuming connection in a persistent session: routes its messages (lib/mqtt.ts consume), then subscribes. */
  consume({ filters, clientId = this.clientId, ...options }: ConsumerOptions): Consumer {
    const client = this.connect(clientId);
    const consumption = consume(client, { ...options, log: this.log, concurrency: this.config.CONSUMER_CONCURRENCY, registry: this.metrics.registry });
    this.#consumptions.push(consumption);
    const subscribed = new Promise<void>((resolve) => client.on('packetreceive', (packet) => packet.cmd === 'suback' && resolve()));
    subscribe(client, filters, this.log);
    return { client, consumption, subscribed };
  }

  /** Publishes what `db`'s outbox holds on `publisher`, from now until shutdown (after the consumers drained). */
  outbox(db: DB, publisher: MqttClient, options: Pick<RelayOptions, 'window' | 'onSent' | 'holdUntil'> = {}): OutboxRelay {
    const relay = new OutboxRelay({ db, client: publisher, log: this.log, registry: this.metrics.registry, ...options });
    relay.start();
    this.#relays.push(relay);
    return relay;
  }

  /** Publishes the process's live figures (lib/stats.ts) every second until shutdown. */
  publishStats(publisher: MqttClient, name: StatsName, snapshot: () => Record<string, unknown>): StatsPublisher {
    const stats = new StatsPublisher(publisher, name, snapshot);
    stats.start();
    this.#stats.push(stats);
    return stats;
  }

  /** Serves the app on HTTP_HOST:HTTP_PORT and says so: "<name> listening", with its URL and `fields`. */
  async serve(app: Parameters<typeof serveApp>[0], fields: Record<string, unknown> = {}): Promise<Served> {
    const { HTTP_PORT, HTTP_HOST } = this.config;
    this.#http = await serveApp(app, HTTP_PORT, HTTP_HOST);
    this.log.info({ http: `http://${HTTP_HOST}:${this.#http.port}`, ...fields }, `${this.name} listening`);
    return this.#http;
  }

  /** From now on SIGTERM/SIGINT stop the process in the house order (see the top of this file). */
  stopOnSignal({ first, last }: StopSteps = {}): void {
    onShutdown(this.log, async () => {
      for (const stats of this.#stats) stats.stop();
      await first?.();
      await this.#http?.close();
      // Operations in progress finish and are acknowledged first; closing the sessions then hands
      // what was not started back to the broker.
      await Promise.all(this.#consumptions.map((c) => c.drain()));
      for (const relay of this.#relays) await relay.stop();
      await Promise.all(this.#connections.map((c) => closeMqtt(c)));
      await last?.();
      // What spans are buffered go out last (bounded by the exporter's own timeout).
      await this.#tracing.shutdown();
    });
  }
}
