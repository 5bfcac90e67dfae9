// The Rate Limiting pattern's worked example against the ERP sandbox: 10,000 records of 10 RU into
// 20,000 RU/s of capacity, ideally 5 s.
//   naive: the document's loop, straight to the ERP: send every record, resend the rejected ones,
//          until none is left (no pacing, no Retry-After);
//   paced: the records go to the real broker (QoS 1, stock movements) and the real worker processes
//          drain them through leases and the pacer.
// Prints a table, or with --json {"idealSeconds", "naive": {...}, "paced": {...}}, and the CPU seconds
// the broker and the workers spent per 1,000 paced records (each measured from when its part of the
// drain began: the broker once the records are queued, a worker once it is consuming; and again
// over the second half of the drain alone, once the processes are warmer), and the
// write system calls per record over the same span (a count the machine's neighbours move much less).
// `--burn` runs one CPU-burning process beside the whole demo (a busy neighbour on the machine).
// The broker, the ERP sandbox and the workers run compiled, as the container image runs them
// (`npm run build` first, done here); DEMO_FROM=source runs them through tsx.
//
//   npm run demo:rate-limit [-- --json] [-- --burn]   (DEMO_RECORDS=10000 DEMO_CAPACITY_RU=20000 DEMO_WORKERS=2;
//                                                      DEMO_CONCURRENCY: the workers' CONSUMER_CONCURRENCY, their default when unset; DEMO_FROM=dist)
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { entryFrom, freePort, startProcess } from '../harness/process.js';
import { connectPublisher, erpStats, movementMessages, publishAll, startWorkerSystem } from '../harness/workers.js';
import { CpuMeter } from './cpu.js';
import { processesFrom } from './from.js';

const RECORDS = Number(process.env.DEMO_RECORDS ?? 10_000);
const CAPACITY = Number(process.env.DEMO_CAPACITY_RU ?? 20_000);
const COST = 10;
const WORKERS = Number(process.env.DEMO_WORKERS ?? 2);
/** Messages each worker holds per workflow: the workers' own default unless DEMO_CONCURRENCY says. */
const inHand: Record<string, string> = process.env.DEMO_CONCURRENCY ? { CONSUMER_CONCURRENCY: process.env.DEMO_CONCURRENCY } : {};
const json = process.argv.includes('--json');
const burn = process.argv.includes('--burn');
const FROM = processesFrom('DEMO_FROM');
const idealSeconds = (RECORDS * COST) / CAPACITY;
const say = (...args: unknown[]) => {
  if (!json) console.log(...args);
};

async function naive() {
  const dataDir = mkdtempSync(join(tmpdir(), 'demo-naive-'));
  const port = await freePort();
  const erp = await startProcess({ name: 'erp', ...entryFrom('sandbox/erp/main.ts', FROM === 'dist'), env: { DATA_DIR: dataDir, HTTP_PORT: String(port), ERP_CAPACITY_RU: String(CAPACITY), LOG_LEVEL: 'info' } });
  const url = `http://127.0.0.1:${port}/erp/records`;
  try {
    let pending = Array.from({ length: RECORDS }, (_, n) => n);
    let sent = 0;
    let throttled = 0;
    const started = performance.now();
    for (let round = 1; pending.length > 0 && round <= 100; round++) {
      const rejected: number[] = [];
      let next = 0;
      // As fast as the ERP answers: 64 requests in flight at a time, no pacing, Retry-After ignored.
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          while (next < pending.length) {
            const n = pending[next++]!;
            sent++;
            const res = await fetch(url, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ operationId: `naive:${n}`, kind: 'stock-movement', payload: { n } }),
            });
            await res.arrayBuffer();
            if (res.status === 429) {
              throttled++;
              rejected.push(n);
            }
          }
        }),
      );
      say(`  naive round ${round}: sent ${pending.length}, rejected ${rejected.length}`);
      pending = rejected;
    }
    const seconds = (performance.now() - started) / 1000;
    return { records: RECORDS, sent, throttled, seconds: round2(seconds) };
  } finally {
    await erp.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function paced() {
  const system = await startWorkerSystem({
    compiled: FROM === 'dist',
    workers: WORKERS,
    erpCapacityRu: CAPACITY,
    workerEnv: { ...inHand, LEASE_CAPACITY_RU: String(CAPACITY), LEASE_PARTITIONS: '20' },
  });
  try {
    // As in the pattern, the records wait in durable messaging first: the workers joined their
    // group (persistent sessions), stop, the records are published, and the workers start again.
    await Promise.all(system.workers.map((w) => w.stop()));
    const feeder = await connectPublisher(system.broker.mqttUrl);
    const publishStart = performance.now();
    await publishAll(feeder, movementMessages(RECORDS, 'demo'));
    const published = (performance.now() - publishStart) / 1000;
    await feeder.endAsync();
    const cpu = new CpuMeter();
    cpu.mark('broker', system.broker.process.pid);
    // Not ours to make cheaper in production (a real ERP runs elsewhere), but here it shares the two cores.
    cpu.mark('erp', system.erp.child.pid);
    const restart = Array.from({ length: WORKERS }, (_, i) =>
      system.startWorker(i + 1).then((w) => {
        cpu.mark(`worker-${i + 1}`, w.child.pid);
        return w;
      }),
    );
    // The clock runs from the ERP's first paced record to its last, read every 20 ms.
    let stats = await erpStats(system.erpUrl);
    let first: number | undefined;
    // The second half of the drain on its own: the code is warmer by then (the first seconds of a
    // cold process cost several times as much per record), so its CPU per record is closer to the
    // marginal cost. (Messages the workers already hold at that poll were received before it.)
    let late: { cpu: CpuMeter; from: number } | undefined;
    for (let i = 0; i < 6000 && (stats.records['stock-movement'] ?? 0) < RECORDS; i++) {
      await new Promise((r) => setTimeout(r, 20));
      stats = await erpStats(system.erpUrl);
      if (first === undefined && stats.accepted > 0) first = performance.now() - 10;
      const done = stats.records['stock-movement'] ?? 0;
      if (late === undefined && done >= RECORDS / 2 && done < RECORDS && cpu.marked('worker') === WORKERS) late = { cpu: cpu.since(), from: done };
    }
    const seconds = (performance.now() - (first ?? performance.now())) / 1000;
    await Promise.all(restart);
    cpu.read();
    late?.cpu.read();
    const recorded = stats.records['stock-movement'] ?? 0;
    const units = recorded * COST;
    const busy = stats.seconds.filter((s) => s.units > 0);
    say(`  paced: ${RECORDS} records queued in the broker in ${published.toFixed(2)} s, then ${WORKERS} workers started`);
    say(`  ERP seconds (RU accepted, 429s where any): ${busy.map((s) => (s.rejected ? `${s.units}/${s.rejected}×429` : s.units)).join(' ')}`);
    return {
      records: recorded,
      sent: stats.calls,
      throttled: stats.rejected,
      seconds: round2(seconds),
      utilisation: round2(units / (CAPACITY * seconds)),
      cpuSecondsPer1000: perThousand(cpu, recorded),
      /** The same over the second half of the drain (from record `from`); null when no poll fell early enough in it to measure a quarter of the records. */
      secondHalf: late && recorded - late.from >= RECORDS / 4 ? { from: late.from, cpuSecondsPer1000: perThousand(late.cpu, recorded - late.from) } : null,
      writeCallsPerRecord: writesPerRecord(cpu, recorded),
    };
  } finally {
    await system.stop();
  }
}

const round2 = (n: number) => Math.round(n * 100) / 100;
const round3 = (n: number) => Math.round(n * 1000) / 1000;
const perThousand = (cpu: CpuMeter, records: number) => {
  const per = (s: number) => round3((s * 1000) / Math.max(records, 1));
  const broker = cpu.total('broker');
  const workers = cpu.total('worker');
  return { broker: per(broker), workers: per(workers), total: per(broker + workers), erpSandbox: per(cpu.total('erp')) };
};

const writesPerRecord = (cpu: CpuMeter, records: number) => {
  const per = (n: number | undefined) => (n === undefined ? 'n/a' : round2(n / Math.max(records, 1)));
  return { broker: per(cpu.writes('broker')), workers: per(cpu.writes('worker')), erpSandbox: per(cpu.writes('erp')) };
};

/** One process spinning on a core for the whole demo, when --burn is given. */
const burner = burn ? spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }) : undefined;
process.once('exit', () => burner?.kill('SIGKILL'));

say(`${RECORDS} records × ${COST} RU into ${CAPACITY} RU/s: ideally ${idealSeconds} s${burn ? '; one CPU-burning process beside' : ''}`);
const n = await naive();
const p = await paced();
burner?.kill('SIGKILL');
if (json) {
  console.log(JSON.stringify({ idealSeconds, burn, naive: n, paced: p }));
} else {
  const rows = [
    ['', 'records', 'sent', '429s', 'seconds', 'utilisation'],
    ['naive', n.records, n.sent, n.throttled, n.seconds.toFixed(2), `${Math.round(((n.records * COST) / CAPACITY / n.seconds) * 100)} %`],
    ['paced', p.records, p.sent, p.throttled, p.seconds.toFixed(2), `${Math.round(p.utilisation * 100)} %`],
  ];
  for (const r of rows) console.log(r.map((c, i) => String(c).padStart(i === 0 ? 6 : 12)).join(''));
  const c = p.cpuSecondsPer1000;
  console.log(`paced: CPU seconds per 1,000 records: broker ${c.broker}, workers ${c.workers}, together ${c.total}; the ERP sandbox ${c.erpSandbox}${burn ? ' (one CPU-burning process beside)' : ''}`);
  if (p.secondHalf) {
    const h = p.secondHalf.cpuSecondsPer1000;
    console.log(`paced, second half (from record ${p.secondHalf.from}): CPU seconds per 1,000 records: broker ${h.broker}, workers ${h.workers}, together ${h.total}; the ERP sandbox ${h.erpSandbox}`);
  }
  const w = p.writeCallsPerRecord;
  console.log(`paced: write system calls per record: broker ${w.broker}, workers ${w.workers}; the ERP sandbox ${w.erpSandbox}`);
  const ok = p.sent <= 1.01 * p.records && p.throttled <= 0.005 * p.sent && p.seconds <= 1.1 * idealSeconds;
  console.log(`paced: sent ≤ 1.01 × records, 429s ≤ 0.5 % of sent, time ≤ 1.10 × ${idealSeconds} s: ${ok ? 'yes' : 'NO'}`);
}
