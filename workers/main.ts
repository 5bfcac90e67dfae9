// Worker process: config → MQTT (one publisher, several consuming connections per workflow) →
// HTTP health/metrics → shutdown. Two workflows share the ERP: orders and stock movements.
//
// mqtt.js handles one message at a time per connection (see lib/mqtt.ts), so a process runs several
// operations at once by holding several consuming connections, each a member of its workflow's
// shared group with its own stable client id.
import { hostname } from 'node:os';
import { z } from 'zod';
import { Counter } from 'prom-client';
import { commonEnv, loadConfig, mqttEnv, port, positiveInt, url } from '../lib/config.js';
import { createApp, serveApp } from '../lib/http.js';
import { createLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { closeMqtt, connectMqtt, consume, subscribe, type MqttClient, type Route } from '../lib/mqtt.js';
import { onShutdown } from '../lib/shutdown.js';
import { orderReadyForErp, stockMovement } from '../lib/topics.js';
import { ErpClient } from './erp-client.js';
import { SOURCE, orderWorkerRoutes } from './order-worker.js';
import { stockWorkerRoutes } from './stock-worker.js';

const config = loadConfig({
  ...commonEnv,
  ...mqttEnv,
  HTTP_PORT: port(3005),
  ERP_URL: url('http://127.0.0.1:3004'),
  ERP_TIMEOUT_MS: positiveInt(5000),
  WORKER_MAX_ATTEMPTS: positiveInt(8),
  /** Stable per worker process: its persistent MQTT sessions (and queued messages) are keyed by it. */
  WORKER_ID: z.string().regex(/^[A-Za-z0-9_.-]{1,48}$/).default(`worker-${hostname()}`.slice(0, 48)),
  /** `shared` joins the order-workers / stock-workers groups ($share/…) so several workers split the work. */
  WORKER_SUBSCRIPTION: z.enum(['shared', 'plain']).default('shared'),
  /** Consuming connections per workflow: operations in progress at once, per workflow. */
  WORKER_CONNECTIONS: z.coerce.number().int().min(1).max(64).default(4),
});
const log = createLogger('worker', config.LOG_LEVEL);
const metrics = createMetrics('worker');
const erpCalls = new Counter({ name: 'worker_erp_calls_total', help: 'ERP calls by result', labelNames: ['result'] as const, registers: [metrics.registry] });
const messages = new Counter({
  name: 'worker_messages_total',
  help: 'Messages handled by workflow and outcome',
  labelNames: ['workflow', 'outcome'] as const,
  registers: [metrics.registry],
});

const clientId = config.MQTT_CLIENT_ID ?? config.WORKER_ID;
const credentials = { url: config.MQTT_URL, username: config.MQTT_USERNAME, password: config.MQTT_PASSWORD, log };
// Outcomes and dead letters go out on their own connection (see lib/mqtt.ts on why).
const publisher = connectMqtt({ ...credentials, clientId: `${clientId}-pub`, clean: true });
const erp = new ErpClient(config.ERP_URL, config.ERP_TIMEOUT_MS);
const common = { publisher, erp, log, maxAttempts: config.WORKER_MAX_ATTEMPTS, onErpResult: (r: string) => erpCalls.inc({ result: r }) };

interface Workflow {
  name: 'orders' | 'movements';
  /** Consumer name (dead-letter topic) and shared group. */
  group: string;
  topic: string;
  tag: string;
  routes: Route[];
}
const workflows: Workflow[] = [
  { name: 'orders', group: 'order-workers', topic: orderReadyForErp.topic, tag: 'o', routes: orderWorkerRoutes(common) },
  { name: 'movements', group: 'stock-workers', topic: stockMovement.topic, tag: 'm', routes: stockWorkerRoutes(common) },
];

const consumers: MqttClient[] = [];
const app = createApp({ log, metrics, ready: () => ({ consumers: consumers.length > 0 && consumers.every((c) => c.connected), publisher: publisher.connected }) });
const http = await serveApp(app, config.HTTP_PORT, config.HTTP_HOST);
log.info({ http: `http://${config.HTTP_HOST}:${http.port}`, workerId: config.WORKER_ID, subscription: config.WORKER_SUBSCRIPTION }, 'worker listening');

// One workflow's connections at a time, each group joined before the next: whoever waits for this
// process's first "subscribed" line then knows the order group exists and keeps what it is sent.
for (const wf of workflows) {
  const filter = config.WORKER_SUBSCRIPTION === 'shared' ? `$share/${wf.group}/${wf.topic}` : wf.topic;
  const joined: Promise<void>[] = [];
  for (let i = 1; i <= config.WORKER_CONNECTIONS; i++) {
    const client = connectMqtt({ ...credentials, clientId: `${clientId}-${wf.tag}${i}` });
    consume(client, { consumer: wf.group, publisher, source: SOURCE, log, routes: wf.routes, onOutcome: (outcome) => messages.inc({ workflow: wf.name, outcome }) });
    joined.push(new Promise((resolve) => client.on('packetreceive', (packet) => packet.cmd === 'suback' && resolve())));
    subscribe(client, [filter], log);
    consumers.push(client);
  }
  await Promise.all(joined);
}
log.info({ connections: consumers.length }, 'worker consuming');

onShutdown(log, async () => {
  await http.close();
  // Closing the sessions hands unacknowledged messages back to the broker.
  await Promise.all([...consumers.map((c) => closeMqtt(c)), closeMqtt(publisher)]);
});
