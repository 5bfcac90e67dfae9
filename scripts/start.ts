// `npm start`: every process of the system on one machine with its embedded defaults, run by
// concurrently (prefixed output, Ctrl-C stops them all). Ports and paths come from the same
// environment variables the processes read; see the README for each one and its default.
import concurrently, { type ConcurrentlyCommandInput } from 'concurrently';

const env = process.env;
const host = env.HTTP_HOST ?? '127.0.0.1';
const ports = {
  orders: env.ORDERS_PORT ?? '3002',
  erp: env.ERP_PORT ?? '3004',
  worker: env.WORKER_PORT ?? '3005',
  broker: env.BROKER_HTTP_PORT ?? '3006',
  mqtt: env.MQTT_PORT ?? '1883',
  mqttWs: env.MQTT_WS_PORT ?? '8083',
};
const shared = {
  DATA_DIR: env.DATA_DIR ?? './data',
  MQTT_URL: env.MQTT_URL ?? `mqtt://${host}:${ports.mqtt}`,
  // Development default: the broker's users come with the access-control issue's password file.
  BROKER_ALLOW_ANONYMOUS: env.BROKER_ALLOW_ANONYMOUS ?? 'true',
};
const node = (entry: string) => `node --import tsx ${entry}`;

const commands: ConcurrentlyCommandInput[] = [
  { name: 'broker', command: node('broker/main.ts'), env: { ...shared, HTTP_PORT: ports.broker, MQTT_PORT: ports.mqtt, MQTT_WS_PORT: ports.mqttWs } },
  { name: 'erp', command: node('sandbox/erp/main.ts'), env: { ...shared, HTTP_PORT: ports.erp } },
  { name: 'orders', command: node('api/orders/main.ts'), env: { ...shared, HTTP_PORT: ports.orders } },
  { name: 'worker', command: node('workers/main.ts'), env: { ...shared, HTTP_PORT: ports.worker, WORKER_ID: 'worker-1', ERP_URL: `http://${host}:${ports.erp}` } },
];

console.log(`Woodytoys is starting:
  orders API     http://${host}:${ports.orders}/api/orders   (OpenAPI: /api/orders/openapi.json)
  ERP sandbox    http://${host}:${ports.erp}/erp/stats
  MQTT broker    mqtt://${host}:${ports.mqtt}  ws://${host}:${ports.mqttWs}  (health: http://${host}:${ports.broker}/healthz)
  order worker   http://${host}:${ports.worker}/metrics
Press Ctrl-C to stop everything.
`);

const { result } = concurrently(commands, { prefix: 'name', killOthersOn: ['failure'], restartTries: 0 });
result.then(
  () => process.exit(0),
  () => process.exit(1),
);
