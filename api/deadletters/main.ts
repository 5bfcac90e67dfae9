// Dead-letter service: config → database (group commit) → MQTT (consumer in the shared group
// `deadletters`, outbox relay for replays) → HTTP (admin API) → shutdown.
import { Counter, Gauge } from 'prom-client';
import { z } from 'zod';
import { commonEnv, loadConfig, mqttEnv, port } from '../../lib/config.js';
import { dataFile } from '../../lib/db.js';
import { answerAfterCommit, groupCommit } from '../../lib/group-commit.js';
import { serveApp } from '../../lib/http.js';
import { createLogger } from '../../lib/log.js';
import { createMetrics } from '../../lib/metrics.js';
import { closeMqtt, connectMqtt, consume, consumerEnv, subscribe } from '../../lib/mqtt.js';
import { OutboxRelay } from '../../lib/outbox.js';
import { onShutdown } from '../../lib/shutdown.js';
import { StatsPublisher } from '../../lib/stats.js';
import { PROCESSES } from '../../lib/processes.js';
import { createDeadLetterApp } from './app.js';
import { GROUP, deadLetterRoutes, deadLetterSubscription } from './consumer.js';
import { DeadLetterStore, SOURCE } from './store.js';

const config = loadConfig({
  ...commonEnv,
  ...mqttEnv,
  ...consumerEnv,
  HTTP_PORT: port(PROCESSES.deadletters.ports.HTTP_PORT.port),
  ADMIN_API_KEY: z.string().min(16, 'use at least 16 characters').optional(),
});
const log = createLogger('deadletters', config.LOG_LEVEL);
const metrics = createMetrics('deadletters');
const store = new DeadLetterStore(dataFile(config.DATA_DIR, 'deadletters'));
groupCommit(store.db);

const registers = [metrics.registry];
const stored = new Counter({ name: 'dead_letters_stored_total', help: 'Dead letters stored, by consumer', labelNames: ['consumer'] as const, registers });
const replayed = new Counter({ name: 'dead_letters_replayed_total', help: 'Dead letters replayed (their original event published again), by consumer', labelNames: ['consumer'] as const, registers });
new Gauge({
  name: 'dead_letters',
  help: 'Dead letters kept, by consumer and state (waiting: not replayed yet)',
  labelNames: ['consumer', 'state'] as const,
  registers,
  collect() {
    this.reset();
    for (const [consumer, n] of Object.entries(store.countByConsumer())) {
      this.set({ consumer, state: 'waiting' }, n.waiting);
      this.set({ consumer, state: 'replayed' }, n.replayed);
    }
  },
});

const clientId = config.MQTT_CLIENT_ID ?? 'deadletters';
const credentials = { url: config.MQTT_URL, username: config.MQTT_USERNAME, password: config.MQTT_PASSWORD, log };
// One connection publishes (replays, its own dead letters, figures); the other consumes in a persistent session.
const publisher = connectMqtt({ ...credentials, clientId: `${clientId}-pub`, clean: true });
const consumer = connectMqtt({ ...credentials, clientId });
const relay = new OutboxRelay({ db: store.db, client: publisher, log, registry: metrics.registry });
const consumption = consume(consumer, {
  consumer: GROUP,
  publisher,
  source: SOURCE,
  log,
  routes: deadLetterRoutes({ store, log, onStored: (c) => stored.inc({ consumer: c }) }),
  concurrency: config.CONSUMER_CONCURRENCY,
  db: store.db,
  registry: metrics.registry,
});
subscribe(consumer, [deadLetterSubscription], log);
relay.start();
// Dead letters per consumer for the dashboard (woodytoys/public/stats/deadletters): counts only.
const stats = new StatsPublisher(publisher, 'deadletters', () => ({ byConsumer: store.countByConsumer() }));
stats.start();

const app = createDeadLetterApp({
  store,
  log,
  metrics,
  ready: () => ({ database: store.db.open }),
  adminApiKey: config.ADMIN_API_KEY,
  onReplayed: (letters) => {
    for (const l of letters) replayed.inc({ consumer: l.consumer });
    if (letters.length) relay.wake();
  },
});
const http = await serveApp(answerAfterCommit(app, store.db), config.HTTP_PORT, config.HTTP_HOST);
log.info({ http: `http://${config.HTTP_HOST}:${http.port}` }, 'deadletters listening');

onShutdown(log, async () => {
  stats.stop();
  await http.close();
  await consumption.drain();
  await relay.stop();
  await Promise.all([closeMqtt(consumer), closeMqtt(publisher)]);
  store.close();
});
