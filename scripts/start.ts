// `npm start`: every process of the system on one machine with its embedded defaults (Aedes,
// SQLite, SQLite leases), run by concurrently (prefixed output, Ctrl-C stops them all), with nginx
// in front when it is installed; BROKER=mosquitto runs a local Mosquitto instead of our broker.
// Each service logs in to the broker as its own user: the passwords are generated on first start
// into $DATA_DIR/mqtt-credentials.json, and so are the admin API key and the load-test key (listed
// in the gateway's GATEWAY_API_KEYS, so `npm run load` has a bucket of its own).
// The processes, their ports and MQTT users come from lib/processes.ts (scripts/start-plan.ts);
// ports and paths can be changed with the environment variables listed in the README.
import { join, resolve } from 'node:path';
import concurrently, { type ConcurrentlyCommandInput } from 'concurrently';
import { z } from 'zod';
import { brokerPasswords, devCredentials, mqttLogin, type ServiceUser } from '../broker/dev-logins.js';
import { MOSQUITTO_INSTALL_HINT, writeMosquittoConfig, writeMosquittoPasswords } from '../broker/mosquitto/run.js';
import { ConfigError, loadConfig, port, positiveInt } from '../lib/config.js';
import { LOG_FORMATS, logFormat } from '../lib/log.js';
import { PROCESS_LIST, PROCESSES, routedProcesses, sourceCommand, startPorts, upstreamVariable, VIEWER_USER, type ProcessDeclaration } from '../lib/processes.js';
import { findProgram } from '../lib/programs.js';
import { INSTALL_HINT } from '../gateway/nginx.js';
import { renderGateway, shellCommand, shellLine } from '../gateway/render.js';
import { ADMIN_KEY_FILE, LOAD_TEST_KEY_FILE, devKey } from './dev-keys.js';
import { startPlan } from './start-plan.js';

const config = loadConfig({
  DATA_DIR: z.string().min(1).default('./data'),
  HTTP_HOST: z.string().min(1).default('127.0.0.1'),
  // Every process's ports (CATALOG_PORT, …, WORKER_PORT_NEXT: workers 2, 3, … from there on).
  ...Object.fromEntries(startPorts(PROCESS_LIST).map((d) => [d.startVariable, port(d.port)])),
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
const ports = Object.fromEntries(startPorts(PROCESS_LIST).map((d) => [d.startVariable, (config as Record<string, unknown>)[d.startVariable] as number]));
/** The port npm start gives that process (its HTTP port unless another listener is named). */
const portOf = (p: ProcessDeclaration, listener = 'HTTP_PORT') => ports[p.ports[listener]!.startVariable]!;
const mqttPort = portOf(PROCESSES.broker, 'MQTT_PORT');
const mqttWsPort = portOf(PROCESSES.broker, 'MQTT_WS_PORT');
const credentials = devCredentials(config.DATA_DIR);
const adminKey = config.ADMIN_API_KEY ?? devKey(config.DATA_DIR, ADMIN_KEY_FILE);
const loadTestKey = devKey(config.DATA_DIR, LOAD_TEST_KEY_FILE);
const mosquitto = config.BROKER === 'mosquitto';
// The children write to concurrently's pipes, never a terminal: they are told what this one is.
const shared = { DATA_DIR: config.DATA_DIR, HTTP_HOST: host, MQTT_URL: `mqtt://${host}:${mqttPort}`, LOG_FORMAT: logFormat(process.env) };
const erpUrl = `http://${host}:${portOf(PROCESSES.erp)}`;
const brokerHttp = `http://${host}:${portOf(PROCESSES.broker)}`;

// What each process needs beyond its declaration.
const extra: Record<string, (name: string) => Record<string, string>> = {
  broker: () => ({ BROKER_PASSWORDS: brokerPasswords(credentials) }),
  erp: () => ({ ERP_CAPACITY_RU: String(config.ERP_CAPACITY_RU) }),
  worker: (name) => ({
    WORKER_ID: name,
    ERP_URL: erpUrl,
    LEASE_CAPACITY_RU: String(config.ERP_CAPACITY_RU),
    // Group backlogs come from our broker's /metrics; Mosquitto has none, so the workers estimate
    // their backlog from what they hold themselves (workers/backlog.ts).
    ...(mosquitto ? {} : { BROKER_METRICS_URL: `${brokerHttp}/metrics` }),
  }),
};
const plan = startPlan(PROCESS_LIST, {
  ports,
  shared,
  login: (user) => mqttLogin(credentials, user as ServiceUser),
  adminKey,
  replicas: { [PROCESSES.worker.name]: config.WORKERS },
  extra: (p, name) => extra[p.name]?.(name) ?? {},
});
const commands: ConcurrentlyCommandInput[] = plan.map(({ name, declaration, entry, env }) =>
  name === PROCESSES.broker.name && mosquitto ? mosquittoCommand() : { name, command: sourceCommand(declaration, entry), env },
);
const workerPorts = plan.filter((p) => p.declaration === PROCESSES.worker).map((p) => Number(p.env.HTTP_PORT));
const routed = routedProcesses(PROCESS_LIST);

// The gateway first: it is the address to use.
const gatewayLines: string[] = [];
const nginx = findProgram('nginx');
if (nginx) {
  try {
    const gateway = renderGateway({
      ...process.env,
      DATA_DIR: config.DATA_DIR,
      GATEWAY_HOST: process.env.GATEWAY_HOST ?? host,
      ...Object.fromEntries(routed.map((p) => [upstreamVariable(p), `${host}:${portOf(p)}`])),
      MQTT_WS_UPSTREAM: `${host}:${mqttWsPort}`,
      DASHBOARD_MQTT_USERNAME: VIEWER_USER,
      DASHBOARD_MQTT_PASSWORD: credentials[VIEWER_USER],
      // The load-test key beside any partner keys given here.
      GATEWAY_API_KEYS: [process.env.GATEWAY_API_KEYS, loadTestKey].filter(Boolean).join(','),
    });
    commands.unshift({ name: 'gateway', command: shellCommand(nginx, gateway) });
    const ws = gateway.url.replace(/^http/, 'ws');
    gatewayLines.push(
      `  gateway        ${gateway.url}   dashboard at /, APIs under ${routed.map((p) => p.route.prefix).join(', ')}, MQTT at ${ws}/mqtt`,
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
  ? `  MQTT broker    Mosquitto: mqtt://${host}:${mqttPort}  ws://${host}:${mqttWsPort}  (config: ${join(config.DATA_DIR, 'mosquitto', 'mosquitto.conf')})`
  : `  MQTT broker    mqtt://${host}:${mqttPort}  ws://${host}:${mqttWsPort}  (health: ${brokerHttp}/healthz)`;
const apiLines = routed.map((p) => {
  const url = `http://${host}:${portOf(p)}${p.route.prefix}`;
  return `  ${`${p.name} API`.padEnd(14)} ${url}   (OpenAPI: ${p.route.prefix}/openapi.json)`;
});
console.log(`Woodytoys is starting:
${gatewayLines.join('\n')}
${apiLines.join('\n')}
  ERP sandbox    ${erpUrl}/erp/stats   (capacity ${config.ERP_CAPACITY_RU} RU/s)
${brokerLine}
  MQTT topics    http://${host}:${portOf(PROCESSES.orders)}/asyncapi.json   (AsyncAPI; through the gateway too)
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
  if (mqttPort === 0 || mqttWsPort === 0) {
    console.error('BROKER=mosquitto: MQTT_PORT and MQTT_WS_PORT need real port numbers (0 would hide the ports from the other processes)');
    process.exit(78);
  }
  const dataDir = resolve(config.DATA_DIR, 'mosquitto');
  const passwordFile = join(dataDir, 'passwd');
  const conf = writeMosquittoConfig({ port: mqttPort, wsPort: mqttWsPort, host, dataDir, passwordFile });
  writeMosquittoPasswords(passwordFile, credentials);
  return { name: 'mosquitto', command: shellLine([program, '-c', conf]) };
}
