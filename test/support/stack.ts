// The whole system for end-to-end tests: broker, ERP sandbox, orders service and workers, each a
// real process from source, on free loopback ports, sharing one temporary data directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startProcess, type Proc } from './process.js';

export interface StackOptions {
  workers?: number;
  erpCapacityRu?: number;
  /** Extra environment for every process. */
  env?: Record<string, string>;
  workerEnv?: Record<string, string>;
}

export interface Stack {
  dataDir: string;
  urls: { orders: string; erp: string; mqtt: string };
  broker: Proc;
  erp: Proc;
  orders: Proc;
  workers: Proc[];
  startBroker(): Promise<Proc>;
  stop(): Promise<void>;
}

export async function startStack({ workers = 1, erpCapacityRu = 1000, env = {}, workerEnv = {} }: StackOptions = {}): Promise<Stack> {
  const dataDir = mkdtempSync(join(tmpdir(), 'woodytoys-'));
  const [mqttPort, wsPort, brokerHttp, erpPort, ordersPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  const common = { DATA_DIR: dataDir, HTTP_HOST: '127.0.0.1', MQTT_URL: `mqtt://127.0.0.1:${mqttPort}`, BROKER_ALLOW_ANONYMOUS: 'true', ...env };
  const startBroker = () =>
    startProcess({ name: 'broker', entry: 'broker/main.ts', env: { ...common, MQTT_PORT: String(mqttPort), MQTT_WS_PORT: String(wsPort), HTTP_PORT: String(brokerHttp) } });

  const started: Proc[] = [];
  try {
    const broker = await startBroker();
    started.push(broker);
    const erp = await startProcess({ name: 'erp', entry: 'sandbox/erp/main.ts', env: { ...common, HTTP_PORT: String(erpPort), ERP_CAPACITY_RU: String(erpCapacityRu) } });
    started.push(erp);
    const orders = await startProcess({ name: 'orders', entry: 'api/orders/main.ts', env: { ...common, HTTP_PORT: String(ordersPort) } });
    started.push(orders);
    const workerProcs: Proc[] = [];
    for (let i = 1; i <= workers; i++) {
      const w = await startProcess({
        name: `worker-${i}`,
        entry: 'workers/main.ts',
        env: { ...common, HTTP_PORT: '0', WORKER_ID: `test-worker-${i}`, ERP_URL: `http://127.0.0.1:${erpPort}`, ...workerEnv },
        ready: (l) => l.msg === 'subscribed',
      });
      workerProcs.push(w);
      started.push(w);
    }
    const stack: Stack = {
      dataDir,
      urls: { orders: `http://127.0.0.1:${ordersPort}`, erp: `http://127.0.0.1:${erpPort}`, mqtt: `mqtt://127.0.0.1:${mqttPort}` },
      broker,
      erp,
      orders,
      workers: workerProcs,
      async startBroker() {
        stack.broker = await startBroker();
        return stack.broker;
      },
      async stop() {
        await Promise.all([...stack.workers, stack.orders, stack.erp].map((p) => p.stop()));
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

export const sampleOrder = (n = 1) => ({
  customer: { name: `Customer ${n}`, email: `customer${n}@example.com` },
  items: [{ productId: 'wooden-train', quantity: 1 + (n % 3) }],
});

export async function postOrder(base: string, body: unknown = sampleOrder()): Promise<{ status: number; location: string | null; body: { id?: string } }> {
  const res = await fetch(`${base}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, location: res.headers.get('location'), body: (await res.json()) as { id?: string } };
}

export async function getJson<T = Record<string, unknown>>(url: string): Promise<T> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url} → ${res.status}`);
  return (await res.json()) as T;
}
