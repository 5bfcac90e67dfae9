// Dead-letter service: config → database (group commit) → MQTT (consumer in the shared group
// `deadletters`, outbox relay for replays) → HTTP (admin API) → shutdown.
import { Counter, Gauge } from 'prom-client';
import { z } from 'zod';
import { commonEnv, loadConfig, mqttEnv, port } from '../../lib/config.js';
import { dataFile } from '../../lib/db.js';
import { answerAfterCommit, groupCommit } from '../../lib/group-commit.js';
import { consumerEnv } from '../../lib/mqtt.js';
import { Service } from '../../lib/service.js';
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
const service = new Service('deadletters', config);
const { log, metrics } = service;
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

// One connection publishes (replays, its own dead letters, figures); the other consumes in a persistent session.
const publisher = service.publisher();
const relay = service.outbox(store.db, publisher);
service.consume({
  consumer: GROUP,
  publisher,
  source: SOURCE,
  routes: deadLetterRoutes({ store, log, onStored: (c) => stored.inc({ consumer: c }) }),
  db: store.db,
  filters: [deadLetterSubscription],
});
// Dead letters per consumer for the dashboard (woodytoys/public/stats/deadletters): counts only.
service.publishStats(publisher, 'deadletters', () => ({ byConsumer: store.countByConsumer() }));

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
await service.serve(answerAfterCommit(app, store.db));

service.stopOnSignal({ last: () => store.close() });
