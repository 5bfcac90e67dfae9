// Catalog service: config → database (seeded on first start) → MQTT (outbox relay) → HTTP → shutdown.
// It consumes nothing, so it needs only the publishing connection.
import { z } from 'zod';
import { bool, commonEnv, loadConfig, mqttEnv, port } from '../../lib/config.js';
import { dataFile } from '../../lib/db.js';
import { Service } from '../../lib/service.js';
import { PROCESSES } from '../../lib/processes.js';
import { createCatalogApp } from './app.js';
import { CatalogStore } from './store.js';

const config = loadConfig({
  ...commonEnv,
  ...mqttEnv,
  HTTP_PORT: port(PROCESSES.catalog.ports.HTTP_PORT.port),
  ADMIN_API_KEY: z.string().min(16, 'use at least 16 characters').optional(),
  CATALOG_SEED: bool(true),
});
const service = new Service('catalog', config);
const { log, metrics } = service;
const store = new CatalogStore(dataFile(config.DATA_DIR, 'catalog'), { seed: config.CATALOG_SEED });
const relay = service.outbox(store.db, service.publisher());

const app = createCatalogApp({
  store,
  log,
  metrics,
  ready: () => ({ database: store.db.open }),
  adminApiKey: config.ADMIN_API_KEY,
  onChange: () => relay.wake(),
});
await service.serve(app);

service.stopOnSignal({ last: () => store.close() });
