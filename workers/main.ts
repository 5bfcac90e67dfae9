// Worker process: config → MQTT (consume created orders) → HTTP health/metrics → shutdown.
import { hostname } from 'node:os';
import { z } from 'zod';
import { Counter } from 'prom-client';
import { commonEnv, loadConfig, mqttEnv, port, positiveInt, url } from '../lib/config.js';
import { createApp, serveApp } from '../lib/http.js';
import { createLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { closeMqtt, connectMqtt, consume, subscribe } from '../lib/mqtt.js';
import { onShutdown } from '../lib/shutdown.js';
import { orderReadyForErp } from '../lib/topics.js';
import { ErpClient } from './erp-client.js';
import { SOURCE, orderWorkerRoutes } from './order-worker.js';

const config = loadConfig({
  ...commonEnv,
  ...mqttEnv,
  HTTP_PORT: port(3005),
  ERP_URL: url('http://127.0.0.1:3004'),
  ERP_TIMEOUT_MS: positiveInt(5000),
  WORKER_MAX_ATTEMPTS: positiveInt(8),
  /** Stable per worker process: its persistent MQTT session (and queued messages) is keyed by it. */
  WORKER_ID: z.string().regex(/^[A-Za-z0-9_.-]{1,48}$/).default(`worker-${hostname()}`.slice(0, 48)),
  /** `shared` joins the order-workers group ($share/…) so several workers split the orders. */
  WORKER_SUBSCRIPTION: z.enum(['shared', 'plain']).default('plain'),
});
const log = createLogger('worker', config.LOG_LEVEL);
const metrics = createMetrics('worker');
const erpCalls = new Counter({ name: 'worker_erp_calls_total', help: 'ERP calls by result', labelNames: ['result'] as const, registers: [metrics.registry] });
const messages = new Counter({ name: 'worker_messages_total', help: 'Messages handled by outcome', labelNames: ['outcome'] as const, registers: [metrics.registry] });

const clientId = config.MQTT_CLIENT_ID ?? config.WORKER_ID;
const credentials = { url: config.MQTT_URL, username: config.MQTT_USERNAME, password: config.MQTT_PASSWORD, log };
// Outcomes and dead letters go out on their own connection (see lib/mqtt.ts on why).
const publisher = connectMqtt({ ...credentials, clientId: `${clientId}-pub`, clean: true });
const mqtt = connectMqtt({ ...credentials, clientId });
const erp = new ErpClient(config.ERP_URL, config.ERP_TIMEOUT_MS);
consume(mqtt, {
  consumer: 'order-workers',
  publisher,
  source: SOURCE,
  log,
  routes: orderWorkerRoutes({ publisher, erp, log, maxAttempts: config.WORKER_MAX_ATTEMPTS, onErpResult: (r) => erpCalls.inc({ result: r }) }),
  onOutcome: (outcome) => messages.inc({ outcome }),
});
const filter = config.WORKER_SUBSCRIPTION === 'shared' ? `$share/order-workers/${orderReadyForErp.topic}` : orderReadyForErp.topic;
subscribe(mqtt, [filter], log);

const app = createApp({ log, metrics, ready: () => ({ consumer: mqtt.connected, publisher: publisher.connected }) });
const http = await serveApp(app, config.HTTP_PORT, config.HTTP_HOST);
log.info({ http: `http://${config.HTTP_HOST}:${http.port}`, workerId: config.WORKER_ID, filter }, 'worker listening');

onShutdown(log, async () => {
  await http.close();
  // Closing the session hands unacknowledged messages back to the broker.
  await Promise.all([closeMqtt(mqtt), closeMqtt(publisher)]);
});
