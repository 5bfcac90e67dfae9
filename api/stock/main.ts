// Stock service: config → database (seeded on first start) → MQTT (outbox relay + consumer in the
// shared group `stock`) → HTTP → shutdown.
import { Gauge } from 'prom-client';
import { z } from 'zod';
import { bool, commonEnv, loadConfig, mqttEnv, port, positiveInt } from '../../lib/config.js';
import { dataFile } from '../../lib/db.js';
import { answerAfterCommit, groupCommit } from '../../lib/group-commit.js';
import { consumerEnv } from '../../lib/mqtt.js';
import { Service } from '../../lib/service.js';
import { PROCESSES } from '../../lib/processes.js';
import { createStockApp } from './app.js';
import { GROUP, stockRoutes, stockSubscriptions } from './consumers.js';
import { SOURCE, StockStore } from './store.js';

const config = loadConfig({
  ...commonEnv,
  ...mqttEnv,
  ...consumerEnv,
  HTTP_PORT: port(PROCESSES.stock.ports.HTTP_PORT.port),
  ADMIN_API_KEY: z.string().min(16, 'use at least 16 characters').optional(),
  STOCK_SEED: bool(true),
  STOCK_IMPORT_MAX_BYTES: positiveInt(32 * 1024 * 1024),
  STOCK_IMPORT_MAX_MOVEMENTS: positiveInt(100_000),
  /** Publishes awaiting their PUBACK at once: a 20,000-movement import goes out faster with more. */
  STOCK_OUTBOX_WINDOW: positiveInt(256),
});
const service = new Service('stock', config);
const { log, metrics } = service;
const store = new StockStore(dataFile(config.DATA_DIR, 'stock'), { seed: config.STOCK_SEED });
// What one turn changes (reservations of the messages in hand, imports, admin writes) commits together.
groupCommit(store.db);

// One connection publishes (outbox relay, dead letters); the other consumes in a persistent session.
const publisher = service.publisher();
const relay = service.outbox(store.db, publisher, { window: config.STOCK_OUTBOX_WINDOW });
service.consume({
  consumer: GROUP,
  publisher,
  source: SOURCE,
  routes: stockRoutes({ store, log, onChange: () => relay.wake() }),
  db: store.db,
  filters: stockSubscriptions,
});

new Gauge({
  name: 'stock_movements_parked',
  help: 'Imported movements parked: the ERP could not be reached for all their attempts; their dead letter waits for a replay',
  registers: [metrics.registry],
  collect() {
    this.set(store.countParked());
  },
});
const app = createStockApp({
  store,
  log,
  metrics,
  ready: () => ({ database: store.db.open }),
  adminApiKey: config.ADMIN_API_KEY,
  onChange: () => relay.wake(),
  importMaxBytes: config.STOCK_IMPORT_MAX_BYTES,
  importMaxMovements: config.STOCK_IMPORT_MAX_MOVEMENTS,
});
await service.serve(answerAfterCommit(app, store.db));

service.stopOnSignal({ last: () => store.close() });
