// The whole system for end-to-end tests: broker, ERP sandbox, catalog, stock, orders, the dead-letter
// service and workers,
// each a real process from source, on free loopback ports, sharing one temporary data directory.
// The broker is ours by default, or a real Mosquitto with the repo's configuration, users and ACL.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startProcess, type Proc } from './process.js';
import { startGateway, type RunningGateway } from '../../gateway/nginx.js';
import { brokerPasswords, devCredentials, mqttLogin } from '../../broker/dev-logins.js';
import { startMosquitto, writeMosquittoPasswords } from '../../broker/mosquitto/run.js';

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
}

/** The ADMIN_API_KEY the stack gives orders, catalog and stock. */
export const ADMIN_KEY = 'test-admin-key-0123456789';

export interface Stack {
  dataDir: string;
  urls: { orders: string; erp: string; mqtt: string; ws: string; catalog: string; stock: string; deadletters: string };
  broker: Proc;
  erp: Proc;
  catalog: Proc;
  stock: Proc;
  orders: Proc;
  deadletters: Proc;
  workers: Proc[];
  startBroker(): Promise<Proc>;
  /** The process running now under that name: broker, erp, catalog, stock, orders, deadletters, worker-<n>. */
  proc(name: ProcessName): Proc;
  /**
   * Starts that process again after a kill or a stop (it is stopped first if still running): same
   * ports, same data directory, same environment, plus `env`. Resolves once it is ready again.
   */
  restart(name: ProcessName, env?: Record<string, string>): Promise<Proc>;
  stop(): Promise<void>;
}

type ServiceName = 'broker' | 'erp' | 'catalog' | 'stock' | 'orders' | 'deadletters';
export type ProcessName = ServiceName | `worker-${number}`;

export async function startStack({ workers = 1, erpCapacityRu = 1000, env = {}, workerEnv = {}, erpEnv = {}, stock = {}, broker: brokerKind = 'aedes' }: StackOptions = {}): Promise<Stack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'woodytoys-'));
  const [mqttPort, wsPort, brokerHttp, erpPort, ordersPort, catalogPort, stockPort, deadLettersPort] = await Promise.all(
    [1, 2, 3, 4, 5, 6, 7, 8].map(() => freePort()),
  ) as [number, number, number, number, number, number, number, number];
  const common = { DATA_DIR: dataDir, HTTP_HOST: '127.0.0.1', MQTT_URL: `mqtt://127.0.0.1:${mqttPort}`, ...env };
  // Every service logs in as its own user and is held to the ACL, as in production. Anonymous
  // clients are allowed too, with full access, so that tests can probe and inject freely.
  const credentials = devCredentials(dataDir);
  const login = (user: Parameters<typeof mqttLogin>[1]) => mqttLogin(credentials, user);
  const startBroker = brokerKind === 'mosquitto'
    ? mosquittoStarter(dataDir, credentials, mqttPort, wsPort)
    : (extra: Record<string, string> = {}) =>
        startProcess({
          name: 'broker',
          entry: 'broker/main.ts',
          env: { ...common, BROKER_PASSWORDS: brokerPasswords(credentials), BROKER_ALLOW_ANONYMOUS: 'true', MQTT_PORT: String(mqttPort), MQTT_WS_PORT: String(wsPort), HTTP_PORT: String(brokerHttp), ...extra },
        });
  const backlogSource: Record<string, string> = brokerKind === 'mosquitto' ? {} : { BROKER_METRICS_URL: `http://127.0.0.1:${brokerHttp}/metrics` };
  const admin = { ADMIN_API_KEY: ADMIN_KEY };
  const stockUrl = `http://127.0.0.1:${stockPort}`;
  // How each process starts, kept so that restart() starts it exactly as before.
  const starters: Record<string, (extra?: Record<string, string>) => Promise<Proc>> = {
    broker: startBroker,
    erp: (extra = {}) =>
      startProcess({ name: 'erp', entry: 'sandbox/erp/main.ts', env: { ...common, ...login('erp'), HTTP_PORT: String(erpPort), ERP_CAPACITY_RU: String(erpCapacityRu), ...erpEnv, ...extra } }),
    catalog: (extra = {}) => startProcess({ name: 'catalog', entry: 'api/catalog/main.ts', env: { ...common, ...login('catalog'), ...admin, HTTP_PORT: String(catalogPort), ...extra } }),
    stock: async (extra = {}) => {
      const p = await startProcess({ name: 'stock', entry: 'api/stock/main.ts', env: { ...common, ...login('stock'), ...admin, HTTP_PORT: String(stockPort), ...extra } });
      // Orders must not be created before the stock group exists, or the broker has nobody to keep them for.
      await p.waitForLog((l) => l.msg === 'subscribed');
      return p;
    },
    orders: (extra = {}) => startProcess({ name: 'orders', entry: 'api/orders/main.ts', env: { ...common, ...login('orders'), HTTP_PORT: String(ordersPort), ...admin, ...extra } }),
    deadletters: async (extra = {}) => {
      const p = await startProcess({ name: 'deadletters', entry: 'api/deadletters/main.ts', env: { ...common, ...login('deadletters'), ...admin, HTTP_PORT: String(deadLettersPort), ...extra } });
      // Its group exists before any dead letter can be published.
      await p.waitForLog((l) => l.msg === 'subscribed');
      return p;
    },
  };
  const startWorker = (i: number) => (extra: Record<string, string> = {}) =>
    startProcess({
      name: `worker-${i}`,
      entry: 'workers/main.ts',
      // The workers share the ERP's whole capacity among themselves (leases in the data directory).
      env: { ...common, ...login('worker'), LEASE_CAPACITY_RU: String(erpCapacityRu), ...backlogSource, HTTP_PORT: '0', WORKER_ID: `worker-test-${i}`, ERP_URL: `http://127.0.0.1:${erpPort}`, ...workerEnv, ...extra },
      // Every group joined (orders, stock movements): nothing published from now on is lost.
      ready: (l) => l.msg === 'worker consuming',
    });
  for (let i = 1; i <= workers; i++) starters[`worker-${i}`] = startWorker(i);

  const started: Proc[] = [];
  try {
    const broker = await startBroker();
    started.push(broker);
    const erp = await starters.erp!();
    started.push(erp);
    const catalog = await starters.catalog!();
    started.push(catalog);
    const stockProc = await starters.stock!();
    started.push(stockProc);
    for (const [productId, available] of Object.entries(stock)) await setStock(stockUrl, productId, available);
    const orders = await starters.orders!();
    started.push(orders);
    const deadletters = await starters.deadletters!();
    started.push(deadletters);
    const workerProcs: Proc[] = [];
    for (let i = 1; i <= workers; i++) {
      const w = await starters[`worker-${i}`]!();
      workerProcs.push(w);
      started.push(w);
    }
    const stack: Stack = {
      dataDir,
      urls: {
        orders: `http://127.0.0.1:${ordersPort}`,
        erp: `http://127.0.0.1:${erpPort}`,
        mqtt: `mqtt://127.0.0.1:${mqttPort}`,
        ws: `ws://127.0.0.1:${wsPort}`,
        catalog: `http://127.0.0.1:${catalogPort}`,
        stock: stockUrl,
        deadletters: `http://127.0.0.1:${deadLettersPort}`,
      },
      broker,
      erp,
      catalog,
      stock: stockProc,
      orders,
      deadletters,
      workers: workerProcs,
      async startBroker() {
        stack.broker = await startBroker();
        return stack.broker;
      },
      proc(name) {
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
        else stack[name as ServiceName] = p;
        return p;
      },
      async stop() {
        await Promise.all([...stack.workers, stack.orders, stack.deadletters, stack.stock, stack.catalog, stack.erp].map((p) => p.stop()));
        await stack.broker.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
    return stack;
  } catch (err) {
    await Promise.all(started.map((p) => p.kill()));
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
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
      ORDERS_UPSTREAM: new URL(stack.urls.orders).host,
      CATALOG_UPSTREAM: new URL(stack.urls.catalog).host,
      STOCK_UPSTREAM: new URL(stack.urls.stock).host,
      DEADLETTERS_UPSTREAM: new URL(stack.urls.deadletters).host,
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
