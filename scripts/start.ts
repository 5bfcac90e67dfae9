// `npm start`: every process of the system on one machine with its embedded defaults (Aedes,
// SQLite, SQLite leases), run by concurrently (prefixed output, Ctrl-C stops them all), with nginx
// in front when it is installed. Each service logs in to the broker as its own user: the passwords
// are generated on first start into $DATA_DIR/mqtt-credentials.json, and so is the admin API key.
// Ports and paths come from the environment variables listed in the README.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import concurrently, { type ConcurrentlyCommandInput } from 'concurrently';
import { z } from 'zod';
import { brokerPasswords, devCredentials, mqttLogin } from '../broker/credentials.js';
import { ConfigError, loadConfig, port, positiveInt } from '../lib/config.js';
import { findProgram } from '../lib/programs.js';
import { INSTALL_HINT } from '../gateway/nginx.js';
import { renderGateway, shellCommand } from '../gateway/render.js';

const config = loadConfig({
  DATA_DIR: z.string().min(1).default('./data'),
  HTTP_HOST: z.string().min(1).default('127.0.0.1'),
  CATALOG_PORT: port(3001),
  ORDERS_PORT: port(3002),
  STOCK_PORT: port(3003),
  ERP_PORT: port(3004),
  WORKER_PORT: port(3005),
  BROKER_HTTP_PORT: port(3006),
  MQTT_PORT: port(1883),
  MQTT_WS_PORT: port(8083),
  /** Worker processes to run; they share the ERP's capacity through leases. */
  WORKERS: z.coerce.number().int().min(1).max(16).default(2),
  ERP_CAPACITY_RU: positiveInt(200),
  ADMIN_API_KEY: z.string().min(16).optional(),
});
const host = config.HTTP_HOST;
const credentials = devCredentials(config.DATA_DIR);
const adminKey = config.ADMIN_API_KEY ?? storedAdminKey(config.DATA_DIR);
const shared = { DATA_DIR: config.DATA_DIR, HTTP_HOST: host, MQTT_URL: `mqtt://${host}:${config.MQTT_PORT}` };
const node = (entry: string) => `node --import tsx ${entry}`;
const erpUrl = `http://${host}:${config.ERP_PORT}`;
const brokerHttp = `http://${host}:${config.BROKER_HTTP_PORT}`;

const commands: ConcurrentlyCommandInput[] = [
  {
    name: 'broker',
    command: node('broker/main.ts'),
    env: { ...shared, BROKER_PASSWORDS: brokerPasswords(credentials), HTTP_PORT: String(config.BROKER_HTTP_PORT), MQTT_PORT: String(config.MQTT_PORT), MQTT_WS_PORT: String(config.MQTT_WS_PORT) },
  },
  { name: 'erp', command: node('sandbox/erp/main.ts'), env: { ...shared, ...mqttLogin(credentials, 'erp'), HTTP_PORT: String(config.ERP_PORT), ERP_CAPACITY_RU: String(config.ERP_CAPACITY_RU) } },
  { name: 'catalog', command: node('api/catalog/main.ts'), env: { ...shared, ...mqttLogin(credentials, 'catalog'), HTTP_PORT: String(config.CATALOG_PORT), ADMIN_API_KEY: adminKey } },
  { name: 'stock', command: node('api/stock/main.ts'), env: { ...shared, ...mqttLogin(credentials, 'stock'), HTTP_PORT: String(config.STOCK_PORT), ADMIN_API_KEY: adminKey } },
  { name: 'orders', command: node('api/orders/main.ts'), env: { ...shared, ...mqttLogin(credentials, 'orders'), HTTP_PORT: String(config.ORDERS_PORT) } },
];
const workerPorts: number[] = [];
for (let i = 1; i <= config.WORKERS; i++) {
  const workerPort = config.WORKER_PORT === 0 ? 0 : i === 1 ? config.WORKER_PORT : 3009 + i;
  workerPorts.push(workerPort);
  commands.push({
    name: `worker-${i}`,
    command: node('workers/main.ts'),
    env: {
      ...shared,
      ...mqttLogin(credentials, 'worker'),
      HTTP_PORT: String(workerPort),
      WORKER_ID: `worker-${i}`,
      ERP_URL: erpUrl,
      LEASE_CAPACITY_RU: String(config.ERP_CAPACITY_RU),
      BROKER_METRICS_URL: `${brokerHttp}/metrics`,
    },
  });
}

// The gateway first: it is the address to use.
const gatewayLines: string[] = [];
const nginx = findProgram('nginx');
if (nginx) {
  try {
    const gateway = renderGateway({
      ...process.env,
      DATA_DIR: config.DATA_DIR,
      GATEWAY_HOST: process.env.GATEWAY_HOST ?? host,
      ORDERS_UPSTREAM: `${host}:${config.ORDERS_PORT}`,
      CATALOG_UPSTREAM: `${host}:${config.CATALOG_PORT}`,
      STOCK_UPSTREAM: `${host}:${config.STOCK_PORT}`,
      MQTT_WS_UPSTREAM: `${host}:${config.MQTT_WS_PORT}`,
      DASHBOARD_MQTT_USERNAME: 'viewer',
      DASHBOARD_MQTT_PASSWORD: credentials.viewer,
    });
    commands.unshift({ name: 'gateway', command: shellCommand(nginx, gateway) });
    const ws = gateway.url.replace(/^http/, 'ws');
    gatewayLines.push(
      `  gateway        ${gateway.url}   dashboard at /, APIs under /api/orders, /api/catalog, /api/stock, MQTT at ${ws}/mqtt`,
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
  orders API     http://${host}:${config.ORDERS_PORT}/api/orders     (OpenAPI: /api/orders/openapi.json)
  catalog API    http://${host}:${config.CATALOG_PORT}/api/catalog   (OpenAPI: /api/catalog/openapi.json)
  stock API      http://${host}:${config.STOCK_PORT}/api/stock       (OpenAPI: /api/stock/openapi.json)
  ERP sandbox    ${erpUrl}/erp/stats   (capacity ${config.ERP_CAPACITY_RU} RU/s)
  MQTT broker    mqtt://${host}:${config.MQTT_PORT}  ws://${host}:${config.MQTT_WS_PORT}  (health: ${brokerHttp}/healthz)
  workers        ${workerPorts.map((p) => `http://${host}:${p}/metrics`).join('  ')}
  admin API key  ${adminKey}   (X-API-Key, for catalog and stock admin routes)
  MQTT users     ${join(config.DATA_DIR, 'mqtt-credentials.json')}   (viewer: read-only, for displays)
Press Ctrl-C to stop everything.
`);

const { result } = concurrently(commands, { prefix: 'name', killOthersOn: ['failure'], restartTries: 0 });
result.then(
  () => process.exit(0),
  () => process.exit(1),
);

/** The development admin key, generated once into $DATA_DIR/admin-api-key. */
function storedAdminKey(dataDir: string): string {
  const file = join(dataDir, 'admin-api-key');
  if (existsSync(file)) {
    const key = readFileSync(file, 'utf8').trim();
    if (key.length >= 16) return key;
  }
  const key = randomBytes(18).toString('base64url');
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}
