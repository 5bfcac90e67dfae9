// The whole system for end-to-end tests: every process of the declaration (lib/processes.ts:
// broker, ERP sandbox, catalog, stock, orders, the dead-letter service and workers), started as
// npm start plans them (scripts/start-plan.ts), each a real process, compiled or from source
// (harness/process.ts testFrom()), on free loopback ports, sharing one temporary data directory. The broker is ours by default (one node on SQLite,
// or `brokerNodes` nodes sharing a real redis-server), or a real Mosquitto with the repo's
// configuration, users and ACL.
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startProcess, type Proc } from './process.js';
import { startRedis, type RunningRedis } from './redis.js';
import { startGateway, type RunningGateway } from '../gateway/nginx.js';
import { brokerPasswords, devCredentials, mqttLogin, type ServiceUser } from '../broker/dev-logins.js';
import { startMosquitto, writeMosquittoPasswords } from '../broker/mosquitto/run.js';
import { PROCESS_LIST, PROCESSES, routedProcesses, startPorts, upstreamVariable, type ProcessName as DeclaredName } from '../lib/processes.js';
import { startPlan, type PlannedProcess } from '../scripts/start-plan.js';

export type BrokerKind = 'aedes' | 'mosquitto';

export interface StackOptions {
  workers?: number;
  erpCapacityRu?: number;
  /** Extra environment for every process. */
  env?: Record<string, string>;
  workerEnv?: Record<string, string>;
  /** Extra environment for the ERP sandbox (e.g. its fault injection: ERP_LATENCY_MS, ERP_ERROR_RATE). */
  erpEnv?: Record<string, string>;
  /** Available units to set (admin API) once the stock service runs; the rest keep their seed level. */
  stock?: Record<string, number>;
  /**
   * Our broker (default; anonymous test clients get full access) or Mosquitto (no anonymous
   * access; no /metrics, so the workers estimate their backlog themselves, as with npm start).
   */
  broker?: BrokerKind;
  /**
   * Our broker as that many nodes on one Redis (BROKER_STORE=redis; a real redis-server with AOF,
   * appendfsync always): processes `broker-1` … `broker-<n>`, the other processes connected to them
   * in turn. Unset: one node on SQLite (`broker`), as npm start runs it. Needs redis-server.
   */
  brokerNodes?: number;
}

/** The ADMIN_API_KEY the stack gives orders, catalog and stock. */
export const ADMIN_KEY = 'test-admin-key-0123456789';

export interface Stack {
  dataDir: string;
  /** `mqtt` and `ws`: the broker's (its first node's). */
  urls: { orders: string; erp: string; mqtt: string; ws: string; catalog: string; stock: string; deadletters: string };
  /** Every broker node's MQTT and HTTP (health, /metrics) URLs, in order. */
  brokerUrls: { mqtt: string; http: string }[];
  /** The broker, or with `brokerNodes` its first node (`broker-1`). */
  broker: Proc;
  /** Every broker node running now, in order (just `broker` on one node). */
  brokers: Proc[];
  /** The Redis the nodes share (with `brokerNodes`). */
  redis: RunningRedis | undefined;
  erp: Proc;
  catalog: Proc;
  stock: Proc;
  orders: Proc;
  deadletters: Proc;
  workers: Proc[];
  startBroker(): Promise<Proc>;
  /** The process running now under that name: broker, erp, catalog, stock, orders, deadletters, worker-<n>, broker-<n> (`broker` is broker-1). */
  proc(name: ProcessName): Proc;
  /**
   * Starts that process again after a kill or a stop (it is stopped first if still running): same
   * ports, same data directory, same environment, plus `env`. Resolves once it is ready again.
   */
  restart(name: ProcessName, env?: Record<string, string>): Promise<Proc>;
  stop(): Promise<void>;
}

type ServiceName = Exclude<DeclaredName, 'worker'>;
export type ProcessName = ServiceName | `worker-${number}` | `broker-${number}`;

export async function startStack({ workers = 1, erpCapacityRu = 1000, env = {}, workerEnv = {}, erpEnv = {}, stock = {}, broker: brokerKind = 'aedes', brokerNodes }: StackOptions = {}): Promise<Stack> {
  if (brokerNodes !== undefined && (brokerKind !== 'aedes' || brokerNodes < 1)) throw new Error('brokerNodes: one or more nodes of our broker');
  const dataDir = mkdtempSync(join(tmpdir(), 'woodytoys-'));
  // A free port for each of the declaration's listeners; the workers pick their own (0).
  const ports: Record<string, number> = {};
  for (const d of startPorts(PROCESS_LIST)) ports[d.startVariable] = await freePort();
  const workerPorts = [PROCESSES.worker.ports.HTTP_PORT, PROCESSES.worker.replicas.nextPort];
  for (const d of workerPorts) ports[d.startVariable] = 0;
  const portOf = (p: { ports: Record<string, { startVariable: string }> }, listener = 'HTTP_PORT') => ports[p.ports[listener]!.startVariable]!;
  const [mqttPort, wsPort, brokerHttp, erpPort] = [portOf(PROCESSES.broker, 'MQTT_PORT'), portOf(PROCESSES.broker, 'MQTT_WS_PORT'), portOf(PROCESSES.broker), portOf(PROCESSES.erp)];
  const url = (name: ServiceName) => `http://127.0.0.1:${portOf(PROCESSES[name])}`;
  const common = { DATA_DIR: dataDir, HTTP_HOST: '127.0.0.1', MQTT_URL: `mqtt://127.0.0.1:${mqttPort}`, ...env };
  // Every service logs in as its own user and is held to the ACL, as in production. Anonymous
  // clients are allowed too, with full access, so that tests can probe and inject freely.
  const credentials = devCredentials(dataDir);
  const backlogSource: Record<string, string> = brokerKind === 'mosquitto' ? {} : { BROKER_METRICS_URL: `http://127.0.0.1:${brokerHttp}/metrics` };
  const stockUrl = url('stock');
  // What each process needs beyond its declaration (after it, restart()'s `env`).
  const extra: Partial<Record<DeclaredName, (name: string) => Record<string, string>>> = {
    broker: () => ({ BROKER_PASSWORDS: brokerPasswords(credentials), BROKER_ALLOW_ANONYMOUS: 'true' }),
    erp: () => ({ ERP_CAPACITY_RU: String(erpCapacityRu), ...erpEnv }),
    // The workers share the ERP's whole capacity among themselves (leases in the data directory).
    worker: (name) => ({ LEASE_CAPACITY_RU: String(erpCapacityRu), ...backlogSource, WORKER_ID: name.replace(/^worker-/, 'worker-test-'), ERP_URL: `http://127.0.0.1:${erpPort}`, ...workerEnv }),
  };
  const declaredPlan = startPlan(PROCESS_LIST, {
    ports,
    shared: common,
    login: (user) => mqttLogin(credentials, user as ServiceUser),
    adminKey: ADMIN_KEY,
    replicas: { [PROCESSES.worker.name]: workers },
    extra: (p, name) => extra[p.name as DeclaredName]?.(name) ?? {},
  });
  // Broker nodes beyond the first: ports of their own.
  const nodes = [{ mqtt: mqttPort, ws: wsPort, http: brokerHttp }];
  for (let i = 1; i < (brokerNodes ?? 1); i++) nodes.push({ mqtt: await freePort(), ws: await freePort(), http: await freePort() });
  let redis: RunningRedis | undefined;
  if (brokerNodes !== undefined) {
    const redisDir = join(dataDir, 'redis');
    mkdirSync(redisDir);
    redis = await startRedis({ dir: redisDir });
  }
  const plan = brokerNodes === undefined ? declaredPlan : clusterPlan(declaredPlan, nodes, redis!.url, dataDir);
  // How each process starts, kept so that restart() starts it exactly as before.
  const starters: Record<string, (extra?: Record<string, string>) => Promise<Proc>> = {};
  for (const { name, declaration, entry, env: planned } of plan) {
    const worker = declaration === PROCESSES.worker;
    starters[name] = async (more = {}) => {
      const p = await startProcess({
        name,
        entry,
        env: { ...planned, ...more },
        // A worker is ready once it has joined every group (orders, stock movements): nothing published from then on is lost.
        ...(worker ? { ready: (l: Record<string, unknown>) => l.msg === 'worker consuming' } : {}),
      });
      // Any other member of a shared group (stock, dead letters): the group exists before anything
      // is published to it, or the broker would have nobody to keep it for.
      if (!worker && declaration.groups.length > 0) {
        await p.waitForLog((l) => l.msg === 'subscribed').catch(async (err: unknown) => {
          await p.kill(); // never ready: not left running behind the failed start
          throw err;
        });
      }
      return p;
    };
  }
  if (brokerKind === 'mosquitto') starters.broker = mosquittoStarter(dataDir, credentials, mqttPort, wsPort);
  const brokerNames = plan.filter((p) => p.declaration === PROCESSES.broker).map((p) => p.name);
  // `broker` is the first node of a cluster.
  starters.broker ??= starters[brokerNames[0]!]!;
  const startBroker = starters.broker!;

  const started: Proc[] = [];
  try {
    const procs: Record<string, Proc> = {};
    // The nodes of a cluster start side by side, before anything connects to them.
    if (brokerNodes !== undefined) {
      for (const p of await Promise.all(brokerNames.map((name) => starters[name]!()))) {
        started.push(p);
        procs[p.name] = p;
      }
    }
    for (const { name } of plan) {
      if (procs[name]) continue;
      const p = await starters[name]!();
      started.push(p);
      procs[name] = p;
      if (name === PROCESSES.stock.name) for (const [productId, available] of Object.entries(stock)) await setStock(stockUrl, productId, available);
    }
    const workerProcs = plan.filter((p) => p.declaration === PROCESSES.worker).map((p) => procs[p.name]!);
    const stack: Stack = {
      dataDir,
      urls: {
        orders: url('orders'),
        erp: url('erp'),
        mqtt: `mqtt://127.0.0.1:${mqttPort}`,
        ws: `ws://127.0.0.1:${wsPort}`,
        catalog: url('catalog'),
        stock: stockUrl,
        deadletters: url('deadletters'),
      },
      brokerUrls: nodes.map((n) => ({ mqtt: `mqtt://127.0.0.1:${n.mqtt}`, http: `http://127.0.0.1:${n.http}` })),
      broker: procs[brokerNames[0]!]!,
      brokers: brokerNames.map((name) => procs[name]!),
      redis,
      erp: procs.erp!,
      catalog: procs.catalog!,
      stock: procs.stock!,
      orders: procs.orders!,
      deadletters: procs.deadletters!,
      workers: workerProcs,
      async startBroker() {
        stack.broker = stack.brokers[0] = await startBroker();
        return stack.broker;
      },
      proc(name) {
        if (name.startsWith('broker-')) {
          const p = stack.brokers[brokerNames.indexOf(name)];
          if (!p) throw new Error(`no process ${name}`);
          return p;
        }
        if (name.startsWith('worker-')) {
          const p = stack.workers[Number(name.slice('worker-'.length)) - 1];
          if (!p) throw new Error(`no process ${name}`);
          return p;
        }
        return stack[name as ServiceName];
      },
      async restart(name, extra = {}) {
        const start = starters[name];
        if (!start) throw new Error(`no process ${name}`);
        await stack.proc(name).stop();
        const p = await start(extra);
        if (name.startsWith('worker-')) stack.workers[Number(name.slice('worker-'.length)) - 1] = p;
        else if (name === 'broker' || name.startsWith('broker-')) stack.brokers[Math.max(0, brokerNames.indexOf(name))] = p;
        else stack[name as ServiceName] = p;
        stack.broker = stack.brokers[0]!;
        return p;
      },
      async stop() {
        await Promise.all([...stack.workers, stack.orders, stack.deadletters, stack.stock, stack.catalog, stack.erp].map((p) => p.stop()));
        await Promise.all(stack.brokers.map((p) => p.stop()));
        await redis?.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
    return stack;
  } catch (err) {
    await Promise.all(started.map((p) => p.kill()));
    await redis?.kill();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * The plan with its broker as nodes on one Redis: `broker-1` on the declared ports, the others on
 * `nodes`' ports, each with a data directory of its own; every other process connects to the nodes
 * in turn (a worker reads its backlog from its own node's /metrics).
 */
function clusterPlan(plan: PlannedProcess[], nodes: { mqtt: number; ws: number; http: number }[], redisUrl: string, dataDir: string): PlannedProcess[] {
  const brokerEntry = plan.find((p) => p.declaration === PROCESSES.broker)!;
  const brokers = nodes.map((n, i) => ({
    ...brokerEntry,
    name: `broker-${i + 1}`,
    env: {
      ...brokerEntry.env,
      MQTT_PORT: String(n.mqtt),
      MQTT_WS_PORT: String(n.ws),
      HTTP_PORT: String(n.http),
      // One directory for every node, as compose's one volume: each node's inbox file is its own.
      DATA_DIR: join(dataDir, 'broker'),
      BROKER_STORE: 'redis',
      BROKER_REDIS_URL: redisUrl,
      BROKER_NODE_ID: `broker-${i + 1}`,
      // A node killed and started again waits for its id's lease to run out: short in tests.
      BROKER_NODE_LEASE_MS: '1500',
    },
  }));
  const others = plan
    .filter((p) => p !== brokerEntry)
    .map((p, i) => {
      const node = nodes[i % nodes.length]!;
      const env: Record<string, string> = { ...p.env, MQTT_URL: `mqtt://127.0.0.1:${node.mqtt}` };
      if (env.BROKER_METRICS_URL) env.BROKER_METRICS_URL = `http://127.0.0.1:${node.http}/metrics`;
      return { ...p, env };
    });
  return [...brokers, ...others];
}

/**
 * Mosquitto as the stack's broker: the same users and passwords, the repo's mosquitto.conf and ACL.
 * It writes no JSON log lines (and its stdout reaches a pipe in blocks), so it is ready once its
 * port accepts connections, and its Proc has no log lines to wait for.
 */
function mosquittoStarter(dataDir: string, credentials: ReturnType<typeof devCredentials>, port: number, wsPort: number) {
  const opts = { port, wsPort, dataDir: join(dataDir, 'mosquitto'), passwordFile: join(dataDir, 'mosquitto-passwd') };
  writeMosquittoPasswords(opts.passwordFile, credentials);
  return async (): Promise<Proc> => {
    const running = await startMosquitto(opts);
    return {
      name: 'broker',
      child: running.child,
      logs: [],
      async stop() {
        await running.stop();
        return running.child.exitCode;
      },
      kill: () => running.kill(),
      waitForLog: () => Promise.reject(new Error('Mosquitto writes no JSON log lines')),
    };
  };
}

export const sampleOrder = (n = 1) => ({
  customer: { name: `Customer ${n}`, email: `customer${n}@example.com` },
  items: [{ productId: 'wooden-train', quantity: 1 + (n % 3) }],
});

export async function postOrder(base: string, body: unknown = sampleOrder()): Promise<{ status: number; location: string | null; body: { id?: string } }> {
  const res = await fetch(`${base}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, location: res.headers.get('location'), body: (await res.json()) as { id?: string } };
}

export async function getJson<T = Record<string, unknown>>(url: string, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(url, { headers });
  if (!res.ok) throw new Error(`GET ${url} → ${res.status}`);
  return (await res.json()) as T;
}

/** Sets a product's available units through the stock admin API. */
export async function setStock(stockUrl: string, productId: string, available: number): Promise<void> {
  const res = await fetch(`${stockUrl}/api/stock/levels/${productId}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', 'x-api-key': ADMIN_KEY },
    body: JSON.stringify({ available, reason: 'test setup' }),
  });
  if (!res.ok) throw new Error(`PUT stock level ${productId} → ${res.status}: ${await res.text()}`);
}

export interface StockLevel {
  productId: string;
  available: number;
  reserved: number;
}

export const getStock = (stockUrl: string, productId: string) => getJson<StockLevel>(`${stockUrl}/api/stock/levels/${productId}`);

/**
 * nginx with the repository's nginx.conf in front of a stack, in a runtime directory of its own
 * (removed by stop()). `env` adds gateway settings, e.g. limits.
 */
export async function startGatewayFor(stack: Stack, env: Record<string, string> = {}): Promise<RunningGateway> {
  const runtimeDir = mkdtempSync(join(tmpdir(), 'gateway-'));
  chmodSync(runtimeDir, 0o755); // nginx's workers (nobody, when run as root) must enter it
  try {
    const gateway = await startGateway({
      GATEWAY_RUNTIME_DIR: runtimeDir,
      GATEWAY_PORT: String(await freePort()),
      ...Object.fromEntries(routedProcesses(PROCESS_LIST).map((p) => [upstreamVariable(p), new URL(stack.urls[p.name as ServiceName & keyof Stack['urls']]).host])),
      MQTT_WS_UPSTREAM: new URL(stack.urls.ws).host,
      ...env,
    });
    const stop = gateway.stop.bind(gateway);
    return Object.assign(gateway, {
      async stop(ms?: number) {
        await stop(ms);
        rmSync(runtimeDir, { recursive: true, force: true });
      },
    });
  } catch (err) {
    rmSync(runtimeDir, { recursive: true, force: true });
    throw err;
  }
}
