// `npm start`: every process of the system on one machine with its embedded defaults, run by
// concurrently (prefixed output, Ctrl-C stops them all), with nginx in front when it is installed.
// Ports and paths come from the same environment variables the processes read; see the README for
// each one and its default.
import { existsSync } from 'node:fs';
import concurrently, { type ConcurrentlyCommandInput } from 'concurrently';
import { ConfigError } from '../lib/config.js';
import { INSTALL_HINT } from '../gateway/nginx.js';
import { renderGateway, shellCommand } from '../gateway/render.js';
import { findProgram } from '../test/support/programs.js';

const env = process.env;
const host = env.HTTP_HOST ?? '127.0.0.1';
const ports = {
  catalog: env.CATALOG_PORT ?? '3001',
  orders: env.ORDERS_PORT ?? '3002',
  stock: env.STOCK_PORT ?? '3003',
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
const lines: string[] = [];

// The catalog and stock services join as soon as they exist in the tree.
for (const service of ['catalog', 'stock'] as const) {
  const entry = `api/${service}/main.ts`;
  if (!existsSync(entry)) continue;
  commands.push({ name: service, command: node(entry), env: { ...shared, HTTP_PORT: ports[service] } });
  lines.push(`  ${service.padEnd(14)} http://${host}:${ports[service]}/api/${service}`);
}

// The gateway first: it is the address to use.
const gatewayLines: string[] = [];
const nginx = findProgram('nginx');
if (nginx) {
  try {
    const gateway = renderGateway({
      ...env,
      DATA_DIR: shared.DATA_DIR,
      GATEWAY_HOST: env.GATEWAY_HOST ?? host,
      ORDERS_UPSTREAM: env.ORDERS_UPSTREAM ?? `${host}:${ports.orders}`,
      CATALOG_UPSTREAM: env.CATALOG_UPSTREAM ?? `${host}:${ports.catalog}`,
      STOCK_UPSTREAM: env.STOCK_UPSTREAM ?? `${host}:${ports.stock}`,
      MQTT_WS_UPSTREAM: env.MQTT_WS_UPSTREAM ?? `${host}:${ports.mqttWs}`,
    });
    commands.unshift({ name: 'gateway', command: shellCommand(nginx, gateway) });
    const ws = gateway.url.replace(/^http/, 'ws');
    gatewayLines.push(
      `  gateway        ${gateway.url}   (nginx: /api/orders, /api/catalog, /api/stock, ${ws}/mqtt, dashboard at /)`,
      `                 access log (JSON lines): ${gateway.accessLog}`,
    );
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`gateway: ${err.message}`);
    process.exit(78);
  }
} else {
  gatewayLines.push(
    `  gateway        NOT STARTED: nginx is not installed; ${INSTALL_HINT}.`,
    '                 Until then, call the services directly at the addresses below.',
  );
}

console.log(`Woodytoys is starting:
${gatewayLines.join('\n')}
  orders API     http://${host}:${ports.orders}/api/orders   (OpenAPI: /api/orders/openapi.json)
${lines.length ? `${lines.join('\n')}\n` : ''}  ERP sandbox    http://${host}:${ports.erp}/erp/stats
  MQTT broker    mqtt://${host}:${ports.mqtt}  ws://${host}:${ports.mqttWs}  (health: http://${host}:${ports.broker}/healthz)
  order worker   http://${host}:${ports.worker}/metrics
Press Ctrl-C to stop everything.
`);

const { result } = concurrently(commands, { prefix: 'name', killOthersOn: ['failure'], restartTries: 0 });
result.then(
  () => process.exit(0),
  () => process.exit(1),
);
