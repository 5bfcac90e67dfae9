// Catalog service: config → database (seeded on first start) → MQTT (outbox relay) → HTTP → shutdown.
// It consumes nothing, so it needs only the publishing connection.
import { z } from 'zod';
import { bool, commonEnv, loadConfig, mqttEnv, port } from '../../lib/config.js';
import { dataFile } from '../../lib/db.js';
import { serveApp } from '../../lib/http.js';
import { createLogger } from '../../lib/log.js';
import { createMetrics } from '../../lib/metrics.js';
import { closeMqtt, connectMqtt } from '../../lib/mqtt.js';
import { OutboxRelay } from '../../lib/outbox.js';
import { onShutdown } from '../../lib/shutdown.js';
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
const log = createLogger('catalog', config.LOG_LEVEL);
const metrics = createMetrics('catalog');
const store = new CatalogStore(dataFile(config.DATA_DIR, 'catalog'), { seed: config.CATALOG_SEED });

const clientId = config.MQTT_CLIENT_ID ?? 'catalog';
const publisher = connectMqtt({ url: config.MQTT_URL, username: config.MQTT_USERNAME, password: config.MQTT_PASSWORD, log, clientId: `${clientId}-pub`, clean: true });
const relay = new OutboxRelay({ db: store.db, client: publisher, log, registry: metrics.registry });
relay.start();

const app = createCatalogApp({
  store,
  log,
  metrics,
  ready: () => ({ database: store.db.open }),
  adminApiKey: config.ADMIN_API_KEY,
  onChange: () => relay.wake(),
});
const http = await serveApp(app, config.HTTP_PORT, config.HTTP_HOST);
log.info({ http: `http://${config.HTTP_HOST}:${http.port}` }, 'catalog listening');

onShutdown(log, async () => {
  await http.close();
  await relay.stop();
  await closeMqtt(publisher);
  store.close();
});
