// What a process costs before it does any work: the CPU seconds and resident memory of the broker
// and of a worker from their start until they are ready (the broker listening, the worker
// consuming), each started BENCH_STARTS times, on the embedded defaults (SQLite) and on Redis (the
// broker's sessions, queues and fan-out, the workers' leases) in turns, in one run. A single
// node never loads the Redis parts; the difference between the two rows is what they cost.
//
// It matters where processes start often or start under load: a worker that starts while another
// already drains a backlog takes its CPU from the drain (npm run demo:rate-limit restarts both).
// Needs redis-server for the Redis rows (apt-get install -y redis-server); without it they are skipped.
//
//   npm run bench:startup   (BENCH_STARTS=5; processes compiled, BENCH_FROM=source runs them through tsx)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBroker } from '../harness/broker.js';
import { entryFrom, startProcess } from '../harness/process.js';
import { startRedis, type RunningRedis } from '../harness/redis.js';
import { findProgram } from '../lib/programs.js';
import { cpuSeconds, rssMiB } from './cpu.js';
import { processesFrom } from './from.js';
import { median } from './figures.js';

const STARTS = Number(process.env.BENCH_STARTS ?? 5);
if (!Number.isInteger(STARTS) || STARTS < 1) throw new Error('BENCH_STARTS must be a whole number of at least 1');
const FROM = processesFrom('BENCH_FROM');

interface Reading {
  cpu: number;
  rss: number;
}

/** One start of the broker, then of one worker against it: both read once ready. */
async function startOnce(redis: RunningRedis | undefined): Promise<{ broker: Reading; worker: Reading }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-startup-'));
  const onRedis = (env: Record<string, string>) => (redis ? env : {});
  const broker = await startBroker({
    compiled: FROM === 'dist',
    env: { DATA_DIR: join(dataDir, 'broker'), LOG_LEVEL: 'info', ...onRedis({ BROKER_STORE: 'redis', BROKER_REDIS_URL: redis?.url ?? '' }) },
  });
  try {
    const brokerReading = { cpu: cpuSeconds(broker.process.pid) ?? NaN, rss: rssMiB(broker.process.pid) ?? NaN };
    const worker = await startProcess({
      name: 'worker',
      ...entryFrom('workers/main.ts', FROM === 'dist'),
      env: {
        DATA_DIR: dataDir,
        HTTP_PORT: '0',
        MQTT_URL: broker.mqttUrl,
        ERP_URL: 'http://127.0.0.1:9',
        WORKER_ID: 'worker-1',
        BROKER_METRICS_URL: `${broker.httpUrl}/metrics`,
        ...onRedis({ LEASE_STORE: 'redis', LEASE_REDIS_URL: redis?.url ?? '' }),
      },
      ready: (line) => line.msg === 'worker consuming',
    });
    const workerReading = { cpu: cpuSeconds(worker.child.pid) ?? NaN, rss: rssMiB(worker.child.pid) ?? NaN };
    await worker.stop();
    return { broker: brokerReading, worker: workerReading };
  } finally {
    await broker.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Medians of the readings of one store's starts. */
function row(label: string, runs: { broker: Reading; worker: Reading }[]) {
  const of = (who: 'broker' | 'worker', what: keyof Reading) => median(runs.map((r) => r[who][what]));
  return { label, broker: { cpu: of('broker', 'cpu'), rss: of('broker', 'rss') }, worker: { cpu: of('worker', 'cpu'), rss: of('worker', 'rss') } };
}

const redis = findProgram('redis-server') ? await startRedis() : undefined;
if (!redis) process.stderr.write('redis-server not installed (apt-get install -y redis-server): the Redis row is skipped\n');
const sqliteStarts: { broker: Reading; worker: Reading }[] = [];
const redisStarts: { broker: Reading; worker: Reading }[] = [];
try {
  // The first start of all (files not yet in the page cache) is not counted; then the two stores
  // take turns, so that both rows see the machine's same moments.
  await startOnce(undefined);
  for (let i = 0; i < STARTS; i++) {
    sqliteStarts.push(await startOnce(undefined));
    if (redis) redisStarts.push(await startOnce(redis));
  }
} finally {
  await redis?.stop();
}
const rows = [row('SQLite (the defaults)', sqliteStarts), ...(redis ? [row('Redis', redisStarts)] : [])];

console.log(`start until ready, medians of ${STARTS} starts each (${FROM === 'dist' ? 'compiled' : 'from source'}):`);
console.log(`${'store'.padEnd(24)}${'broker CPU s'.padStart(14)}${'broker RSS MiB'.padStart(16)}${'worker CPU s'.padStart(14)}${'worker RSS MiB'.padStart(16)}`);
for (const r of rows) {
  console.log(`${r.label.padEnd(24)}${r.broker.cpu.toFixed(2).padStart(14)}${r.broker.rss.toFixed(0).padStart(16)}${r.worker.cpu.toFixed(2).padStart(14)}${r.worker.rss.toFixed(0).padStart(16)}`);
}
if (rows.length === 2) {
  const [sqliteRow, redisRow] = rows as [(typeof rows)[number], (typeof rows)[number]];
  console.log(
    `the Redis parts cost at start: broker ${(redisRow.broker.cpu - sqliteRow.broker.cpu).toFixed(2)} CPU s and ${(redisRow.broker.rss - sqliteRow.broker.rss).toFixed(0)} MiB, ` +
      `worker ${(redisRow.worker.cpu - sqliteRow.worker.cpu).toFixed(2)} CPU s and ${(redisRow.worker.rss - sqliteRow.worker.rss).toFixed(0)} MiB (SQLite ÷ Redis, CPU: broker ${(sqliteRow.broker.cpu / redisRow.broker.cpu).toFixed(2)}, worker ${(sqliteRow.worker.cpu / redisRow.worker.cpu).toFixed(2)})`,
  );
}
