// A small system for worker tests, the rate-limit demo and the pacing bench: our broker, the ERP
// sandbox and N worker processes, each real and from source (or compiled), on free loopback ports with one
// temporary data directory (so the SQLite lease store is shared, as on one host).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { createEvent } from '../lib/events.js';
import { stockMovement, stockReserved } from '../lib/topics.js';
import { startBroker, type RunningBroker } from './broker.js';
import { entryFrom, freePort, startProcess, testFrom, type Proc } from './process.js';
import { connectClient } from './mqtt.js';

export interface WorkerSystemOptions {
  workers?: number;
  erpCapacityRu?: number;
  /** Environment for every worker (LEASE_CAPACITY_RU defaults to the ERP's capacity). */
  workerEnv?: Record<string, string>;
  erpEnv?: Record<string, string>;
  echo?: boolean;
  /** Run dist/ (build it first) as the container image does, instead of the sources through tsx. Default: as TEST_FROM says (testFrom()). */
  compiled?: boolean;
}

export interface WorkerSystem {
  dataDir: string;
  broker: RunningBroker;
  erp: Proc;
  erpUrl: string;
  workers: Proc[];
  /**
   * Starts one more worker (index = its number, for its WORKER_ID), ready once it consumes, or
   * once `ready` matches a log line (a worker that cannot reach the broker never consumes).
   */
  startWorker(index: number, env?: Record<string, string>, ready?: (line: Record<string, unknown>) => boolean): Promise<Proc>;
  stop(): Promise<void>;
}

export async function startWorkerSystem({ workers = 1, erpCapacityRu = 1000, workerEnv = {}, erpEnv = {}, echo, compiled = testFrom() === 'dist' }: WorkerSystemOptions = {}): Promise<WorkerSystem> {
  const dataDir = mkdtempSync(join(tmpdir(), 'woodytoys-workers-'));
  const started: Proc[] = [];
  let broker: RunningBroker | undefined;
  try {
    broker = await startBroker({ env: { DATA_DIR: join(dataDir, 'broker'), LOG_LEVEL: 'info' }, compiled });
    const erpPort = await freePort();
    const erp = await startProcess({
      name: 'erp',
      ...entryFrom('sandbox/erp/main.ts', compiled),
      env: { DATA_DIR: dataDir, HTTP_PORT: String(erpPort), ERP_CAPACITY_RU: String(erpCapacityRu), ...erpEnv },
      ...(echo === undefined ? {} : { echo }),
    });
    started.push(erp);
    const erpUrl = `http://127.0.0.1:${erpPort}`;
    const startWorker = async (index: number, env: Record<string, string> = {}, ready = (l: Record<string, unknown>) => l.msg === 'worker consuming') => {
      const w = await startProcess({
        name: `worker-${index}`,
        ...entryFrom('workers/main.ts', compiled),
        env: {
          DATA_DIR: dataDir,
          HTTP_PORT: '0',
          MQTT_URL: broker!.mqttUrl,
          ERP_URL: erpUrl,
          WORKER_ID: `worker-${index}`,
          BROKER_METRICS_URL: `${broker!.httpUrl}/metrics`,
          LEASE_CAPACITY_RU: String(erpCapacityRu),
          ...workerEnv,
          ...env,
        },
        ready,
        ...(echo === undefined ? {} : { echo }),
      });
      started.push(w);
      return w;
    };
    const procs: Proc[] = [];
    for (let i = 1; i <= workers; i++) procs.push(await startWorker(i));
    return {
      dataDir,
      broker,
      erp,
      erpUrl,
      workers: procs,
      startWorker,
      async stop() {
        await Promise.all(started.map((p) => p.stop()));
        await broker?.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await Promise.all(started.map((p) => p.kill()));
    await broker?.kill();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

/** A plain publisher (clean session) for feeding events straight to the broker. */
export const connectPublisher = (url: string) => connectClient(url, { clientId: `feeder-${randomUUID().slice(0, 8)}`, clean: true, protocolVersion: 4, reconnectPeriod: 0 });

/** Publishes the events with QoS 1, keeping up to `inflight` unacknowledged; resolves when all are acknowledged. */
export async function publishAll(client: MqttClient, messages: { topic: string; payload: string }[], inflight = 500): Promise<void> {
  let next = 0;
  let outstanding = 0;
  if (messages.length === 0) return;
  await new Promise<void>((resolve, reject) => {
    const pump = () => {
      while (outstanding < inflight && next < messages.length) {
        const m = messages[next++]!;
        outstanding++;
        client.publish(m.topic, m.payload, { qos: 1 }, (err) => {
          if (err) return reject(err);
          outstanding--;
          if (next === messages.length && outstanding === 0) resolve();
          else pump();
        });
      }
    };
    pump();
  });
}

/** `count` stock movements of one import, as messages ready to publish; movement ids `<prefix>-<n>`. */
export function movementMessages(count: number, prefix = 'mv', importId = randomUUID()) {
  return Array.from({ length: count }, (_, n) => ({
    topic: stockMovement.topic,
    payload: JSON.stringify(createEvent(stockMovement, { importId, movementId: `${prefix}-${n}`, productId: 'wooden-train', delta: 1 + (n % 5) }, { source: '/woodytoys/bench' })),
  }));
}

/** `count` orders ready for the ERP, as messages ready to publish. */
export function orderMessages(count: number, emailDomain = 'example.com') {
  return Array.from({ length: count }, (_, n) => ({
    topic: stockReserved.topic,
    payload: JSON.stringify(
      createEvent(
        stockReserved,
        { orderId: randomUUID(), customer: { name: `Customer ${n}`, email: `c${n}@${emailDomain}` }, items: [{ productId: 'wooden-train', quantity: 1 }] },
        { source: '/woodytoys/bench' },
      ),
    ),
  }));
}

export interface ErpStats {
  capacity: number;
  calls: number;
  accepted: number;
  rejected: number;
  duplicates: number;
  refused: number;
  records: Record<string, number>;
  seconds: { second: number; accepted: number; rejected: number; units: number }[];
}

export async function erpStats(erpUrl: string): Promise<ErpStats> {
  const res = await fetch(`${erpUrl}/erp/stats`);
  if (!res.ok) throw new Error(`GET /erp/stats → ${res.status}`);
  return (await res.json()) as ErpStats;
}
