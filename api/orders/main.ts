// Orders service: config → database → MQTT (outbox relay + outcome consumer) → HTTP → shutdown.
import { Gauge } from 'prom-client';
import { commonEnv, loadConfig, mqttEnv, port, positiveInt } from '../../lib/config.js';
import { dataFile } from '../../lib/db.js';
import { serveApp } from '../../lib/http.js';
import { createLogger } from '../../lib/log.js';
import { createMetrics } from '../../lib/metrics.js';
import { closeMqtt, connectMqtt, consume, subscribe } from '../../lib/mqtt.js';
import { OutboxRelay } from '../../lib/outbox.js';
import { onShutdown } from '../../lib/shutdown.js';
import { StatsPublisher } from '../../lib/stats.js';
import { orderConfirmed, orderFailed, stockRejected } from '../../lib/topics.js';
import { createOrdersApp } from './app.js';
import { outcomeRoutes } from './outcomes.js';
import { OrderStore, SOURCE } from './store.js';

const config = loadConfig({ ...commonEnv, ...mqttEnv, HTTP_PORT: port(3002), ORDERS_MAX_BODY_BYTES: positiveInt(16 * 1024) });
const log = createLogger('orders', config.LOG_LEVEL);
const metrics = createMetrics('orders');
const store = new OrderStore(dataFile(config.DATA_DIR, 'orders'));

const clientId = config.MQTT_CLIENT_ID ?? 'orders';
const credentials = { url: config.MQTT_URL, username: config.MQTT_USERNAME, password: config.MQTT_PASSWORD, log };
// One connection publishes (outbox relay, dead letters); the other consumes outcomes in a persistent session.
const publisher = connectMqtt({ ...credentials, clientId: `${clientId}-pub`, clean: true });
const consumer = connectMqtt({ ...credentials, clientId });
const relay = new OutboxRelay({ db: store.db, client: publisher, log, registry: metrics.registry });
consume(consumer, { consumer: 'orders', publisher, source: SOURCE, log, routes: outcomeRoutes(store, log) });
subscribe(consumer, [orderConfirmed.topic, orderFailed.topic, stockRejected.topic], log);
relay.start();
// Order counts by status for displays and the dashboard (woodytoys/public/stats/orders, retained).
const stats = new StatsPublisher(publisher, 'orders', () => ({ counts: store.countByStatus(), outboxPending: relay.pending() }));
stats.start();

new Gauge({
  name: 'orders',
  help: 'Orders by status',
  labelNames: ['status'] as const,
  registers: [metrics.registry],
  collect() {
    for (const [status, n] of Object.entries(store.countByStatus())) this.set({ status }, n);
  },
});
const app = createOrdersApp({
  store,
  log,
  metrics,
  // Accepting orders needs only the database: while the broker is away they wait in the outbox.
  ready: () => ({ database: store.db.open }),
  onOrderCreated: () => relay.wake(),
  maxBodyBytes: config.ORDERS_MAX_BODY_BYTES,
});
const http = await serveApp(app, config.HTTP_PORT, config.HTTP_HOST);
log.info({ http: `http://${config.HTTP_HOST}:${http.port}` }, 'orders listening');

onShutdown(log, async () => {
  stats.stop();
  await http.close();
  await relay.stop();
  await Promise.all([closeMqtt(consumer), closeMqtt(publisher)]);
  store.close();
});
