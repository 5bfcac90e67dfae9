// Four worker processes, two workflows, one ERP: does the pacing hold across uncoordinated processes?
// 10,000 orders and 5,000 stock movements wait in the broker (published straight to it), then four
// workers drain them through leased partitions. Checks, from the ERP's own one-second windows:
//   - no window accepts more than the capacity by more than 5 %;
//   - utilisation ≥ 90 % in every full window while there is backlog;
//   - the workflows share the capacity in proportion to their backlog (so they finish together);
// then runs again and kills one worker with SIGKILL mid-run: the others must hold all the capacity
// again within one lease TTL, and every record must be in the ERP exactly once. Times run from the
// ERP's first record; the steady run also says how many CPU seconds the broker and the workers spent
// per 1,000 records (each from when its part of the drain began).
//
// The broker, the ERP sandbox and the workers run compiled, as the container image runs them
// (`npm run build` first, done here); BENCH_FROM=source runs them through tsx.
//
//   npm run bench:pacing [-- --json]   (BENCH_ORDERS=10000 BENCH_MOVEMENTS=5000 BENCH_CAPACITY_RU=10000 BENCH_WORKERS=4 BENCH_TTL_MS=5000;
//                                      BENCH_CONCURRENCY: the workers' CONSUMER_CONCURRENCY, their default when unset; BENCH_FROM=dist)
import { connectPublisher, erpStats, movementMessages, orderMessages, publishAll, startWorkerSystem, type ErpStats, type WorkerSystem } from '../harness/workers.js';
import { scrape } from '../harness/metrics.js';
import { sleep } from '../lib/shutdown.js';
import { CpuMeter } from './cpu.js';
import { processesFrom } from './from.js';

const ORDERS = Number(process.env.BENCH_ORDERS ?? 10_000);
const MOVEMENTS = Number(process.env.BENCH_MOVEMENTS ?? 5_000);
const CAPACITY = Number(process.env.BENCH_CAPACITY_RU ?? 10_000);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 4);
const TTL_MS = Number(process.env.BENCH_TTL_MS ?? 5000);
const COST = 10;
const json = process.argv.includes('--json');
const FROM = processesFrom('BENCH_FROM');
const say = (...args: unknown[]) => {
  if (!json) console.log(...args);
};

interface Sample {
  at: number;
  orders: number;
  movements: number;
}

async function leasedCapacity(system: WorkerSystem, alive: number[]): Promise<number> {
  const values = await Promise.all(
    alive.map(async (i) => {
      const url = String(system.workers[i]!.logs.find((l) => l.msg === 'worker listening')!.http);
      return (await scrape(`${url}/metrics`))('worker_leased_capacity_ru') ?? 0;
    }),
  );
  return values.reduce((a, b) => a + b, 0);
}

async function run(kill: boolean) {
  const system = await startWorkerSystem({
    compiled: FROM === 'dist',
    workers: WORKERS,
    erpCapacityRu: CAPACITY,
    workerEnv: { ...(process.env.BENCH_CONCURRENCY ? { CONSUMER_CONCURRENCY: process.env.BENCH_CONCURRENCY } : {}), LEASE_CAPACITY_RU: String(CAPACITY), LEASE_PARTITIONS: '20', LEASE_TTL_MS: String(TTL_MS) },
  });
  try {
    // The work waits in the broker's group queues while the workers are away, as a backlog would.
    await Promise.all(system.workers.map((w) => w.stop()));
    const feeder = await connectPublisher(system.broker.mqttUrl);
    await publishAll(feeder, [...orderMessages(ORDERS), ...movementMessages(MOVEMENTS, 'bench')]);
    await feeder.endAsync();
    const cpu = new CpuMeter();
    cpu.mark('broker', system.broker.process.pid);
    // Polling starts at once: the first workers to be ready start draining before the last one is.
    const restarting = Promise.all(
      Array.from({ length: WORKERS }, (_, i) =>
        system.startWorker(i + 1).then((w) => {
          cpu.mark(`worker-${i + 1}`, w.child.pid);
          return w;
        }),
      ),
    ).then((restarted) => void system.workers.splice(0, system.workers.length, ...restarted));

    const samples: Sample[] = [];
    let stats: ErpStats = await erpStats(system.erpUrl);
    // The clock starts at the ERP's first record (polled every 50 ms: half a poll is added back).
    let firstAt: number | undefined;
    let killedAt: number | undefined;
    let takeoverMs: number | undefined;
    const total = ORDERS + MOVEMENTS;
    const done = (s: ErpStats) => (s.records.order ?? 0) + (s.records['stock-movement'] ?? 0);
    for (let i = 0; i < 4800 && done(stats) < total; i++) {
      await sleep(50);
      stats = await erpStats(system.erpUrl);
      if (firstAt === undefined && done(stats) > 0) firstAt = Date.now() - 25;
      samples.push({ at: Date.now(), orders: stats.records.order ?? 0, movements: stats.records['stock-movement'] ?? 0 });
      if (kill && killedAt === undefined && done(stats) >= total * 0.3) {
        await restarting;
        await system.workers[0]!.kill();
        killedAt = Date.now();
        say(`  killed worker-1 (kill -9) at ${done(stats)} of ${total} records`);
      }
      if (killedAt !== undefined && takeoverMs === undefined && Date.now() - killedAt > 500) {
        const held = await leasedCapacity(system, [1, 2, 3].filter((n) => n < WORKERS));
        if (held >= CAPACITY) takeoverMs = Date.now() - killedAt;
      }
    }
    await restarting;
    cpu.read();
    // Let redelivered messages of the killed worker settle, then read the final counts.
    await sleep(kill ? 3000 : 500);
    stats = await erpStats(system.erpUrl);
    return { stats, samples, takeoverMs, firstAt: firstAt ?? samples[0]!.at, cpu };
  } finally {
    await system.stop();
  }
}

function judge({ stats, samples, firstAt, cpu }: Awaited<ReturnType<typeof run>>, killed = false) {
  const windows = stats.seconds.filter((s) => s.units > 0);
  // Full windows while there is backlog: all but the first (partial start) and the last (drained).
  const full = windows.slice(1, -1);
  const maxUnits = Math.max(...windows.map((w) => w.units));
  const minUtilisation = Math.min(...full.map((w) => w.units / CAPACITY));
  const meanUtilisation = full.reduce((a, w) => a + w.units, 0) / (full.length * CAPACITY);
  // Proportional sharing: while both workflows have backlog, orders should get ORDERS/(ORDERS+MOVEMENTS).
  const both = samples.filter((s) => s.orders < ORDERS && s.movements < MOVEMENTS);
  const first = both[0];
  const last = both.at(-1);
  const orderShare = first && last ? (last.orders - first.orders) / (last.orders - first.orders + last.movements - first.movements) : NaN;
  const finish = (key: 'orders' | 'movements', n: number) => {
    const at = samples.find((s) => s[key] >= n)?.at;
    return at === undefined ? NaN : Math.round((at - firstAt) / 100) / 10;
  };
  const records = (stats.records.order ?? 0) + (stats.records['stock-movement'] ?? 0);
  const per1000 = (s: number) => Math.round((s * 1_000_000) / Math.max(records, 1)) / 1000;
  return {
    records: { orders: stats.records.order ?? 0, movements: stats.records['stock-movement'] ?? 0 },
    calls: stats.calls,
    throttled: stats.rejected,
    duplicates: stats.duplicates,
    windowsRu: windows.map((w) => w.units),
    maxWindowRu: maxUnits,
    overCapacity: Math.round((maxUnits / CAPACITY - 1) * 1000) / 10,
    minUtilisation: Math.round(minUtilisation * 1000) / 1000,
    meanUtilisation: Math.round(meanUtilisation * 1000) / 1000,
    orderShare: Math.round(orderShare * 1000) / 1000,
    expectedOrderShare: Math.round((ORDERS / (ORDERS + MOVEMENTS)) * 1000) / 1000,
    finishedSeconds: { orders: finish('orders', ORDERS), movements: finish('movements', MOVEMENTS) },
    idealSeconds: ((ORDERS + MOVEMENTS) * COST) / CAPACITY,
    // A killed worker's CPU cannot be read after its death: only the steady run's figure is whole.
    cpuSecondsPer1000: killed ? null : { broker: per1000(cpu.total('broker')), workers: per1000(cpu.total('worker')), total: per1000(cpu.total()) },
  };
}

say(`${WORKERS} workers, ${ORDERS} orders + ${MOVEMENTS} movements × ${COST} RU, ERP capacity ${CAPACITY} RU/s, lease TTL ${TTL_MS} ms`);
const steady = judge(await run(false));
say('steady:', steady);
const killedRun = await run(true);
const killed = { ...judge(killedRun, true), takeoverMs: killedRun.takeoverMs ?? null };
say('with kill -9:', killed);
const checks = {
  neverOver5Percent: steady.overCapacity <= 5 && killed.overCapacity <= 5,
  utilisationAtLeast90: steady.minUtilisation >= 0.9,
  proportionalShare: Math.abs(steady.orderShare - steady.expectedOrderShare) <= 0.05,
  takeoverWithinTtl: killed.takeoverMs !== null && killed.takeoverMs <= TTL_MS,
  everyRecordOnce: killed.records.orders === ORDERS && killed.records.movements === MOVEMENTS && steady.records.orders === ORDERS && steady.records.movements === MOVEMENTS,
};
if (json) console.log(JSON.stringify({ capacity: CAPACITY, workers: WORKERS, ttlMs: TTL_MS, steady, killed, checks }));
else console.log('checks:', checks);
