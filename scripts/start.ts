// `npm start`: every process of the system on one machine with its embedded defaults (Aedes,
// SQLite, SQLite leases), run by concurrently (prefixed output, Ctrl-C stops them all), with nginx
// in front when it is installed; BROKER=mosquitto runs a local Mosquitto instead of our broker.
// Each service logs in to the broker as its own user: the passwords are generated on first start
// into $DATA_DIR/mqtt-credentials.json, and so are the admin API key and the load-test key (listed
// in the gateway's GATEWAY_API_KEYS, so `npm run load` has a bucket of its own).
// Ports and paths come from the environment variables listed in the README.
import { join, resolve } from 'node:path';
import concurrently, { type ConcurrentlyCommandInput } from 'concurrently';
import { z } from 'zod';
import { brokerPasswords, devCredentials, mqttLogin } from '../broker/dev-logins.js';
import { MOSQUITTO_INSTALL_HINT, writeMosquittoConfig, writeMosquittoPasswords } from '../broker/mosquitto/run.js';
import { ConfigError, loadConfig, port, positiveInt } from '../lib/config.js';
import { LOG_FORMATS, logFormat } from '../lib/log.js';
import { findProgram } from '../lib/programs.js';
import { INSTALL_HINT } from '../gateway/nginx.js';
import { renderGateway, shellCommand, shellLine } from '../gateway/render.js';
import { ADMIN_KEY_FILE, LOAD_TEST_KEY_FILE, devKey } from './dev-keys.js';

const config = loadConfig({
  DATA_DIR: z.string().min(1).default('./data'),
  HTTP_HOST: z.string().min(1).default('127.0.0.1'),
  CATALOG_PORT: port(3001),
  ORDERS_PORT: port(3002),
  STOCK_PORT: port(3003),
  DEADLETTERS_PORT: port(3007),
  ERP_PORT: port(3004),
  WORKER_PORT: port(3005),
  /** Workers 2, 3, … listen on this port and the next ones. */
  WORKER_PORT_NEXT: port(3011),
  BROKER_HTTP_PORT: port(3006),
  MQTT_PORT: port(1883),
  MQTT_WS_PORT: port(8083),
  /** Which broker: ours (Aedes, embedded) or a local Mosquitto with the repo's configuration. */
  BROKER: z.enum(['aedes', 'mosquitto']).default('aedes'),
  /** Worker processes to run; they share the ERP's capacity through leases. */
  WORKERS: z.coerce.number().int().min(1).max(16).default(2),
  ERP_CAPACITY_RU: positiveInt(200),
  ADMIN_API_KEY: z.string().min(16).optional(),
  /** The children's log format; unset: readable when this terminal is one, JSON otherwise. */
  LOG_FORMAT: z.enum(LOG_FORMATS).optional(),
});
const host = config.HTTP_HOST;
const credentials = devCredentials(config.DATA_DIR);
const adminKey = config.ADMIN_API_KEY ?? devKey(config.DATA_DIR, ADMIN_KEY_FILE);
const loadTestKey = devKey(config.DATA_DIR, LOAD_TEST_KEY_FILE);
const mosquitto = config.BROKER === 'mosquitto';
// The children write to concurrently's pipes, never a terminal: they are told what this one is.
const shared = { DATA_DIR: config.DATA_DIR, HTTP_HOST: host, MQTT_URL: `mqtt://${host}:${config.MQTT_PORT}`, LOG_FORMAT: logFormat(process.env) };
const node = (entry: string) => `node --import tsx ${entry}`;
const erpUrl = `http://${host}:${config.ERP_PORT}`;
const brokerHttp = `http://${host}:${config.BROKER_HTTP_PORT}`;

const commands: ConcurrentlyCommandInput[] = [
  mosquitto ? mosquittoCommand() : {
    name: 'broker',
    command: node('broker/main.ts'),
    env: { ...shared, BROKER_PASSWORDS: brokerPasswords(credentials), HTTP_PORT: String(config.BROKER_HTTP_PORT), MQTT_PORT: String(config.MQTT_PORT), MQTT_WS_PORT: String(config.MQTT_WS_PORT) },
  },
  { name: 'erp', command: node('sandbox/erp/main.ts'), env: { ...shared, ...mqttLogin(credentials, 'erp'), HTTP_PORT: String(config.ERP_PORT), ERP_CAPACITY_RU: String(config.ERP_CAPACITY_RU) } },
  { name: 'catalog', command: node('api/catalog/main.ts'), env: { ...shared, ...mqttLogin(credentials, 'catalog'), HTTP_PORT: String(config.CATALOG_PORT), ADMIN_API_KEY: adminKey } },
  { name: 'stock', command: node('api/stock/main.ts'), env: { ...shared, ...mqttLogin(credentials, 'stock'), HTTP_PORT: String(config.STOCK_PORT), ADMIN_API_KEY: adminKey } },
  { name: 'orders', command: node('api/orders/main.ts'), env: { ...shared, ...mqttLogin(credentials, 'orders'), HTTP_PORT: String(config.ORDERS_PORT), ADMIN_API_KEY: adminKey } },
  { name: 'deadletters', command: node('api/deadletters/main.ts'), env: { ...shared, ...mqttLogin(credentials, 'deadletters'), HTTP_PORT: String(config.DEADLETTERS_PORT), ADMIN_API_KEY: adminKey } },
];
const workerPorts: number[] = [];
for (let i = 1; i <= config.WORKERS; i++) {
  const workerPort = i === 1 ? config.WORKER_PORT : config.WORKER_PORT_NEXT === 0 ? 0 : config.WORKER_PORT_NEXT + i - 2;
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
      // Group backlogs come from our broker's /metrics; Mosquitto has none, so the workers estimate
      // their backlog from what they hold themselves (workers/backlog.ts).
      ...(mosquitto ? {} : { BROKER_METRICS_URL: `${brokerHttp}/metrics` }),
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
      DEADLETTERS_UPSTREAM: `${host}:${config.DEADLETTERS_PORT}`,
      MQTT_WS_UPSTREAM: `${host}:${config.MQTT_WS_PORT}`,
      DASHBOARD_MQTT_USERNAME: 'viewer',
      DASHBOARD_MQTT_PASSWORD: credentials.viewer,
      // The load-test key beside any partner keys given here.
      GATEWAY_API_KEYS: [process.env.GATEWAY_API_KEYS, loadTestKey].filter(Boolean).join(','),
    });
    commands.unshift({ name: 'gateway', command: shellCommand(nginx, gateway) });
    const ws = gateway.url.replace(/^http/, 'ws');
    gatewayLines.push(
      `  gateway        ${gateway.url}   dashboard at /, APIs under /api/orders, /api/catalog, /api/stock, /api/deadletters, MQTT at ${ws}/mqtt`,
      `                 access log (JSON lines): ${gateway.accessLog}`,
      `  load-test key  ${join(config.DATA_DIR, LOAD_TEST_KEY_FILE)}   (npm run load sends it: its own gateway bucket, ` +
        `${gateway.config.GATEWAY_KEY_WRITE_RATE_PER_MIN} writes/min, burst ${gateway.config.GATEWAY_KEY_WRITE_BURST})`,
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

const brokerLine = mosquitto
  ? `  MQTT broker    Mosquitto: mqtt://${host}:${config.MQTT_PORT}  ws://${host}:${config.MQTT_WS_PORT}  (config: ${join(config.DATA_DIR, 'mosquitto', 'mosquitto.conf')})`
  : `  MQTT broker    mqtt://${host}:${config.MQTT_PORT}  ws://${host}:${config.MQTT_WS_PORT}  (health: ${brokerHttp}/healthz)`;
console.log(`Woodytoys is starting:
${gatewayLines.join('\n')}
  orders API     http://${host}:${config.ORDERS_PORT}/api/orders     (OpenAPI: /api/orders/openapi.json)
  catalog API    http://${host}:${config.CATALOG_PORT}/api/catalog   (OpenAPI: /api/catalog/openapi.json)
  stock API      http://${host}:${config.STOCK_PORT}/api/stock       (OpenAPI: /api/stock/openapi.json)
  dead letters   http://${host}:${config.DEADLETTERS_PORT}/api/deadletters   (admin; OpenAPI: /api/deadletters/openapi.json)
  ERP sandbox    ${erpUrl}/erp/stats   (capacity ${config.ERP_CAPACITY_RU} RU/s)
${brokerLine}
  MQTT topics    http://${host}:${config.ORDERS_PORT}/asyncapi.json   (AsyncAPI; through the gateway too)
  workers        ${workerPorts.map((p) => `http://${host}:${p}/metrics`).join('  ')}
  admin API key  ${adminKey}   (X-API-Key, for the admin routes: the orders list, catalog and stock changes, dead letters)
  MQTT users     ${join(config.DATA_DIR, 'mqtt-credentials.json')}   (viewer: read-only, for displays)
Press Ctrl-C to stop everything.
`);

const { result } = concurrently(commands, { prefix: 'name', killOthersOn: ['failure'], restartTries: 0 });
result.then(
  () => process.exit(0),
  () => process.exit(1),
);

/** Mosquitto with the repo's mosquitto.conf and ACL, the same users and passwords, on our ports. */
function mosquittoCommand(): ConcurrentlyCommandInput {
  const program = findProgram('mosquitto');
  if (!program) {
    console.error(`BROKER=mosquitto: mosquitto is not installed; ${MOSQUITTO_INSTALL_HINT}`);
    process.exit(1);
  }
  if (config.MQTT_PORT === 0 || config.MQTT_WS_PORT === 0) {
    console.error('BROKER=mosquitto: MQTT_PORT and MQTT_WS_PORT need real port numbers (0 would hide the ports from the other processes)');
    process.exit(78);
  }
  const dataDir = resolve(config.DATA_DIR, 'mosquitto');
  const passwordFile = join(dataDir, 'passwd');
  const conf = writeMosquittoConfig({ port: config.MQTT_PORT, wsPort: config.MQTT_WS_PORT, host, dataDir, passwordFile });
  writeMosquittoPasswords(passwordFile, credentials);
  return { name: 'mosquitto', command: shellLine([program, '-c', conf]) };
}
