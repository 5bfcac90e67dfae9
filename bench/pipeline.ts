// Does the pipeline keep pace with what the API accepts? Two parts, in one run:
//
// 1. The accept ceiling: `POST /api/orders` on the orders service alone (with its broker, nothing
//    consuming), beside a bare Hono route that parses the same body and answers 202, the reference
//    for what the machine can do over HTTP. autocannon, closed loop, BENCH_CONNECTIONS connections for
//    BENCH_ACCEPT_SECONDS, BENCH_ROUNDS alternating rounds, medians.
// 2. The whole stack through nginx (its limits raised out of the way), the ERP unthrottled, driven
//    open loop: autocannon at a fixed overall rate over BENCH_LOAD_CONNECTIONS connections (open
//    loop as long as each answer comes back within connections ÷ rate seconds; the achieved rate is
//    checked, and latencies are corrected for coordinated omission). Rates rise as fractions of the
//    ceiling (BENCH_RATES), BENCH_STEP_SECONDS each. A step is sustained when the API answered 202 to
//    every request at the offered rate and every queue of the pipeline stayed flat: each group's
//    backlog (waiting + in flight) and persistent-session queue at the broker, and the services'
//    outboxes, sampled every second, end the step under one second's worth of orders and do not grow
//    over its last two thirds. Between steps the pipeline drains.
//
// 3. What tracing costs (issue 17): the orders service alone (with its broker) three ways side by
//    side, in alternating rounds: the OpenTelemetry SDK switched off (OTEL_SDK_DISABLED=true), on
//    without an exporter (the default: ids made and passed on, nothing recorded), and exporting
//    every span over OTLP/HTTP to a receiver in this process. Accepted orders per second (closed
//    loop, as in 1.) and CPU milliseconds per order (orders service + broker), medians.
//
// Prints the ceiling, the highest sustained rate and their ratio, accept latency percentiles, and
// CPU per process (busiest first). CPU_PROF_DIR=… makes every process write a CPU profile.
// BENCH_PARTS=accept,stack,tracing chooses the parts (all by default; stack needs accept).
//
//   npm run bench:pipeline   (BENCH_PARTS=accept,stack,tracing BENCH_CONNECTIONS=20 BENCH_ACCEPT_SECONDS=8 BENCH_ROUNDS=3
//                             BENCH_RATES=0.2,0.3,…,1.0 BENCH_STEP_SECONDS=30 BENCH_LOAD_CONNECTIONS=200 BENCH_WORKERS=1)
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { createServer } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { findProgram } from '../lib/programs.js';
import { sleep } from '../lib/shutdown.js';
import { metricValue } from '../harness/metrics.js';
import { ROOT, freePort, startProcess } from '../harness/process.js';
import { sampleOrder, startGatewayFor, startStack, type Stack } from '../harness/stack.js';
import { parseShareGauge } from '../workers/backlog.js';
import { childPids, cpuSeconds } from './cpu.js';
import { median } from './figures.js';

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 20);
const ACCEPT_SECONDS = Number(process.env.BENCH_ACCEPT_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const RATES = (process.env.BENCH_RATES ?? '0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0').split(',').map(Number);
const STEP_SECONDS = Number(process.env.BENCH_STEP_SECONDS ?? 30);
const LOAD_CONNECTIONS = Number(process.env.BENCH_LOAD_CONNECTIONS ?? 200);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 1);
const BODY = JSON.stringify(sampleOrder(7));
const PARTS = new Set((process.env.BENCH_PARTS ?? 'accept,stack,tracing').split(','));

if (!findProgram('nginx')) {
  console.error('bench:pipeline needs nginx (apt-get install -y nginx)');
  process.exit(1);
}

const say = (line: string) => process.stderr.write(`${line}\n`);

interface Load {
  rps: number;
  ok: number;
  failed: number;
  latency: { p50: number; p90: number; p99: number; max: number };
}

async function load(url: string, options: Partial<autocannon.Options>): Promise<Load> {
  const r = await autocannon({ url, method: 'POST', headers: { 'content-type': 'application/json' }, body: BODY, ...options });
  return {
    rps: r.requests.average,
    ok: r['2xx'],
    failed: r.non2xx + r.errors + r.timeouts,
    latency: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max },
  };
}

// --- 1. the accept ceiling ------------------------------------------------------------------

/** A Hono route that parses the same body and answers 202: what HTTP alone costs on this machine. */
async function startBareHono() {
  const script = `
    import { Hono } from 'hono';
    import { serve } from '@hono/node-server';
    const app = new Hono();
    app.post('/api/orders', async (c) => c.json({ id: crypto.randomUUID(), status: 'pending', ...(await c.req.json()) }, 202));
    serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => console.log(info.port));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve) => createInterface({ input: child.stdout }).once('line', resolve));
  return { url: `http://127.0.0.1:${port}`, stop: () => new Promise<void>((resolve) => child.once('exit', () => resolve()).kill('SIGTERM')) };
}

/** The orders service and its own broker, with `env` for both. */
async function startOrdersAlone(dir: string, env: Record<string, string>) {
  const [mqttPort, wsPort, brokerHttp, ordersPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const common = { ...env, DATA_DIR: dir, HTTP_HOST: '127.0.0.1', MQTT_URL: `mqtt://127.0.0.1:${mqttPort}`, BROKER_ALLOW_ANONYMOUS: 'true' };
  const broker = await startProcess({ name: 'broker', entry: 'broker/main.ts', env: { ...common, MQTT_PORT: String(mqttPort), MQTT_WS_PORT: String(wsPort), HTTP_PORT: String(brokerHttp) } });
  const orders = await startProcess({ name: 'orders', entry: 'api/orders/main.ts', env: { ...common, HTTP_PORT: String(ordersPort) } });
  return { url: `http://127.0.0.1:${ordersPort}/api/orders`, pids: () => [broker.child.pid!, orders.child.pid!], stop: async () => (await orders.stop(), await broker.stop()) };
}

async function acceptCeiling() {
  const dir = mkdtempSync(join(tmpdir(), 'bench-accept-'));
  const hono = await startBareHono();
  let alone: Awaited<ReturnType<typeof startOrdersAlone>> | undefined;
  try {
    alone = await startOrdersAlone(dir, {});
    const orders = alone.url;
    const bare = `${hono.url}/api/orders`;
    await load(orders, { connections: CONNECTIONS, duration: 2 });
    await load(bare, { connections: CONNECTIONS, duration: 2 });
    const runs = { orders: [] as Load[], hono: [] as Load[] };
    for (let round = 0; round < ROUNDS; round++) {
      runs.orders.push(await load(orders, { connections: CONNECTIONS, duration: ACCEPT_SECONDS }));
      runs.hono.push(await load(bare, { connections: CONNECTIONS, duration: ACCEPT_SECONDS }));
      say(`  accept round ${round + 1}: orders ${Math.round(runs.orders.at(-1)!.rps)}/s, bare Hono ${Math.round(runs.hono.at(-1)!.rps)}/s`);
    }
    return {
      orders: median(runs.orders.map((r) => r.rps)),
      hono: median(runs.hono.map((r) => r.rps)),
      ordersRuns: runs.orders.map((r) => Math.round(r.rps)),
      honoRuns: runs.hono.map((r) => Math.round(r.rps)),
      ordersP99: median(runs.orders.map((r) => r.latency.p99)),
      failed: [...runs.orders, ...runs.hono].reduce((n, r) => n + r.failed, 0),
    };
  } finally {
    await hono.stop();
    await alone?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- 2. the whole stack, open loop ----------------------------------------------------------

interface Queues {
  /** name → messages */
  [queue: string]: number;
}

async function metrics(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return res.text();
}

const gauge = (text: string, name: string) => metricValue(text, name) ?? 0;

/** Every queue of the pipeline: each group's backlog and session queue at the broker, each outbox. */
async function queues(stack: Stack, brokerMetrics: string): Promise<Queues> {
  const [broker, orders, stock] = await Promise.all([metrics(brokerMetrics), metrics(`${stack.urls.orders}/metrics`), metrics(`${stack.urls.stock}/metrics`)]);
  const out: Queues = {};
  const depth = parseShareGauge(broker, 'mqtt_shared_queue_depth');
  const inflight = parseShareGauge(broker, 'mqtt_shared_inflight');
  for (const [share, n] of depth) out[share.split('/')[1]!] = n + (inflight.get(share) ?? 0);
  out['sessions'] = gauge(broker, 'mqtt_session_queued_messages');
  out['orders outbox'] = gauge(orders, 'outbox_pending');
  out['stock outbox'] = gauge(stock, 'outbox_pending');
  return out;
}

/** Least-squares slope of y over x. */
function slope(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  const num = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const den = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

/** Flat: under one second's worth of orders at the end, and not growing over the last two thirds. */
function isFlat(samples: Array<[number, number]>, rate: number): boolean {
  const tail = samples.filter(([t]) => t >= samples.at(-1)![0] / 3);
  const last = samples.at(-1)?.[1] ?? 0;
  return last <= Math.max(rate, 50) && slope(tail) <= Math.max(rate * 0.01, 1);
}

interface Step {
  target: number;
  load: Load;
  flat: Record<string, boolean>;
  end: Queues;
  cpu: Record<string, number>;
  sustained: boolean;
}

async function step(stack: Stack, gatewayUrl: string, brokerMetrics: string, pids: Record<string, () => number[]>, target: number): Promise<Step> {
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([name, get]) => [name, get().reduce((a, pid) => a + (cpuSeconds(pid) ?? 0), 0)]));
  const self0 = process.cpuUsage();
  const started = Date.now();
  const series: Record<string, Array<[number, number]>> = {};
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await sleep(1000);
      try {
        const q = await queues(stack, brokerMetrics);
        for (const [name, n] of Object.entries(q)) (series[name] ??= []).push([(Date.now() - started) / 1000, n]);
      } catch {
        // a slow scrape under load: the next one counts
      }
    }
  })();
  const result = await load(`${gatewayUrl}/api/orders`, { connections: LOAD_CONNECTIONS, duration: STEP_SECONDS, overallRate: Math.round(target) });
  sampling = false;
  await sampler;
  const seconds = (Date.now() - started) / 1000;
  const cpu: Record<string, number> = {};
  for (const [name, get] of Object.entries(pids)) cpu[name] = (get().reduce((a, pid) => a + (cpuSeconds(pid) ?? 0), 0) - cpu0[name]!) / seconds;
  const self = process.cpuUsage(self0);
  cpu['load generator'] = (self.user + self.system) / 1e6 / seconds;
  const flat = Object.fromEntries(Object.entries(series).map(([name, s]) => [name, isFlat(s, target)]));
  const end = Object.fromEntries(Object.entries(series).map(([name, s]) => [name, s.at(-1)?.[1] ?? 0]));
  const sustained = result.failed === 0 && result.rps >= 0.97 * target && Object.values(flat).every(Boolean);
  return { target, load: result, flat, end, cpu, sustained };
}

/** Waits (bounded) until every queue is empty again, so that the next step starts from nothing. */
async function drain(stack: Stack, brokerMetrics: string): Promise<boolean> {
  for (let i = 0; i < 120; i++) {
    const q = await queues(stack, brokerMetrics).catch(() => undefined);
    if (q && Object.values(q).every((n) => n === 0)) return true;
    await sleep(1000);
  }
  return false;
}

async function fullStack(ceiling: number) {
  const stack = await startStack({
    workers: WORKERS,
    // Unthrottled: the ERP and the workers' leases far above any rate reached here.
    erpCapacityRu: 1_000_000_000,
    stock: { 'wooden-train': 10_000_000 },
  });
  const gateway = await startGatewayFor(stack, {
    GATEWAY_READ_RATE_PER_MIN: '60000000',
    GATEWAY_WRITE_RATE_PER_MIN: '60000000',
    GATEWAY_READ_BURST: '1000000',
    GATEWAY_WRITE_BURST: '1000000',
    GATEWAY_CONN_PER_IP: '60000',
  });
  try {
    const brokerMetrics = `http://127.0.0.1:${String(stack.broker.logs.find((l) => l.msg === 'broker listening')?.http)}/metrics`;
    const pid = (name: Parameters<Stack['proc']>[0]) => () => [stack.proc(name).child.pid!];
    const pids: Record<string, () => number[]> = {
      broker: pid('broker'),
      orders: pid('orders'),
      stock: pid('stock'),
      catalog: pid('catalog'),
      erp: pid('erp'),
      nginx: () => [gateway.child.pid!, ...childPids(gateway.child.pid)],
    };
    for (let i = 1; i <= WORKERS; i++) pids[`worker-${i}`] = pid(`worker-${i}`);
    // Warm-up: JIT, SQLite pages, keep-alive connections.
    await load(`${gateway.url}/api/orders`, { connections: 20, duration: 3, overallRate: Math.round(ceiling * 0.2) });
    await drain(stack, brokerMetrics);
    const steps: Step[] = [];
    for (const fraction of RATES) {
      const s = await step(stack, gateway.url, brokerMetrics, pids, ceiling * fraction);
      steps.push(s);
      const grew = Object.entries(s.flat).filter(([, f]) => !f).map(([name]) => `${name} ${s.end[name]}`);
      say(
        `  ${Math.round(s.target)}/s offered: ${Math.round(s.load.rps)}/s answered, ${s.load.failed} failed, p99 ${s.load.latency.p99} ms; ` +
          `${s.sustained ? 'sustained' : `NOT sustained${grew.length ? ` (growing: ${grew.join(', ')})` : ''}`}`,
      );
      if (!s.sustained) break;
      if (!(await drain(stack, brokerMetrics))) {
        say('  the pipeline did not drain within two minutes: stopping');
        break;
      }
    }
    return steps;
  } finally {
    await gateway.stop();
    await stack.stop();
  }
}

async function ceilingAndStack() {
  say('1. accept ceiling');
  const ceiling = await acceptCeiling();
  const steps = PARTS.has('stack') ? (say('2. full stack through nginx, open loop'), await fullStack(ceiling.orders)) : [];
  const best = steps.filter((s) => s.sustained).at(-1);
  const pct = (x: number) => `${Math.round(x * 100)} %`;

  console.log(`\nPOST /api/orders accept ceiling (orders service alone, ${CONNECTIONS} connections, median of ${ROUNDS} × ${ACCEPT_SECONDS} s):`);
  console.log(`  orders service   ${Math.round(ceiling.orders)} orders/s   (${ceiling.ordersRuns.join(', ')}), p99 ${ceiling.ordersP99} ms`);
  console.log(`  bare Hono route  ${Math.round(ceiling.hono)} req/s      (${ceiling.honoRuns.join(', ')})`);
  console.log(`  ceiling / bare Hono: ${(ceiling.orders / ceiling.hono).toFixed(3)} (goal: at least 0.08)${ceiling.failed ? `; ${ceiling.failed} failed requests` : ''}`);
  if (!PARTS.has('stack')) return;
  console.log(`\nFull stack through nginx, ERP unthrottled, ${WORKERS} worker(s), open loop, ${STEP_SECONDS} s per rate:`);
  console.log(`  ${'offered/s'.padStart(9)} ${'answered/s'.padStart(10)} ${'failed'.padStart(6)} ${'p50'.padStart(5)} ${'p90'.padStart(5)} ${'p99'.padStart(5)}  queues at the end (flat?)`);
  for (const s of steps) {
    const q = Object.entries(s.end)
      .map(([name, n]) => `${name} ${n}${s.flat[name] ? '' : '↑'}`)
      .join(', ');
    console.log(`  ${Math.round(s.target).toString().padStart(9)} ${Math.round(s.load.rps).toString().padStart(10)} ${String(s.load.failed).padStart(6)} ${String(s.load.latency.p50).padStart(5)} ${String(s.load.latency.p90).padStart(5)} ${String(s.load.latency.p99).padStart(5)}  ${q}${s.sustained ? '' : '  NOT sustained'}`);
  }
  if (best) {
    console.log(`\nhighest rate sustained for ${STEP_SECONDS} s with every queue flat: ${Math.round(best.target)} orders/s = ${(best.target / ceiling.orders).toFixed(2)} × the accept ceiling (goal: at least 0.8)`);
    console.log(`accept latency there (ms): p50 ${best.load.latency.p50}, p90 ${best.load.latency.p90}, p99 ${best.load.latency.p99}, max ${best.load.latency.max}`);
    const busiest = Object.entries(best.cpu).sort((a, b) => b[1] - a[1]);
    console.log(`CPU there (share of one core): ${busiest.map(([name, c]) => `${name} ${pct(c)}`).join(', ')}; busiest: ${busiest[0]![0]}`);
  } else {
    console.log('\nno rate was sustained');
  }
  const failedStep = steps.find((s) => !s.sustained);
  if (failedStep) {
    const busiest = Object.entries(failedStep.cpu).sort((a, b) => b[1] - a[1]);
    console.log(`CPU at ${Math.round(failedStep.target)}/s (not sustained): ${busiest.map(([name, c]) => `${name} ${pct(c)}`).join(', ')}`);
  }
}

// --- 3. what tracing costs ------------------------------------------------------------------

const TRACING_MODES = {
  off: { OTEL_SDK_DISABLED: 'true' },
  'on, no exporter': {},
  'on, exporting': { OTEL_EXPORTER_OTLP_ENDPOINT: '' /* set below */, OTEL_BSP_SCHEDULE_DELAY: '1000' },
} as const;
type TracingMode = keyof typeof TRACING_MODES;

/** An OTLP/HTTP receiver that takes every batch and counts its bytes, as a collector's front would. */
async function startSpanSink() {
  let bytes = 0;
  const server = createServer((req, res) => {
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bytes: () => bytes, stop: () => new Promise((r) => server.close(r)) };
}

async function tracingCost() {
  const sink = await startSpanSink();
  const dirs: string[] = [];
  const setups = new Map<TracingMode, Awaited<ReturnType<typeof startOrdersAlone>>>();
  try {
    for (const [mode, env] of Object.entries(TRACING_MODES) as [TracingMode, Record<string, string>][]) {
      const dir = mkdtempSync(join(tmpdir(), 'bench-tracing-'));
      dirs.push(dir);
      setups.set(mode, await startOrdersAlone(dir, 'OTEL_EXPORTER_OTLP_ENDPOINT' in env ? { ...env, OTEL_EXPORTER_OTLP_ENDPOINT: sink.url } : env));
    }
    for (const setup of setups.values()) await load(setup.url, { connections: CONNECTIONS, duration: 2 });
    const runs = new Map<TracingMode, { rps: number; cpuMsPerOrder: number }[]>([...setups.keys()].map((m) => [m, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [mode, setup] of setups) {
        const cpu = () => setup.pids().reduce((a, pid) => a + (cpuSeconds(pid) ?? 0), 0);
        const before = cpu();
        const r = await load(setup.url, { connections: CONNECTIONS, duration: ACCEPT_SECONDS });
        runs.get(mode)!.push({ rps: r.rps, cpuMsPerOrder: ((cpu() - before) * 1000) / Math.max(1, r.ok) });
      }
      say(`  tracing round ${round + 1}: ${[...runs].map(([mode, rs]) => `${mode} ${Math.round(rs.at(-1)!.rps)}/s`).join(', ')}`);
    }
    return { runs, spanBytes: sink.bytes() };
  } finally {
    for (const setup of setups.values()) await setup.stop();
    await sink.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

// --- run ------------------------------------------------------------------------------------

say(`bench:pipeline on ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
if (PARTS.has('accept') || PARTS.has('stack')) await ceilingAndStack();
if (PARTS.has('tracing')) {
  say('3. what tracing costs');
  const { runs, spanBytes } = await tracingCost();
  const base = runs.get('off')!;
  const med = (rs: { rps: number; cpuMsPerOrder: number }[], k: 'rps' | 'cpuMsPerOrder') => median(rs.map((r) => r[k]));
  console.log(`\nWhat tracing costs: orders service + broker, ${CONNECTIONS} connections, medians of ${ROUNDS} alternating rounds × ${ACCEPT_SECONDS} s:`);
  console.log(`  ${'tracing'.padEnd(16)} ${'orders/s'.padStart(9)} ${'vs off'.padStart(7)} ${'CPU ms/order'.padStart(13)} ${'vs off'.padStart(7)}   rounds`);
  for (const [mode, rs] of runs) {
    const rps = med(rs, 'rps');
    const cpu = med(rs, 'cpuMsPerOrder');
    console.log(
      `  ${mode.padEnd(16)} ${Math.round(rps).toString().padStart(9)} ${(rps / med(base, 'rps')).toFixed(2).padStart(7)} ${cpu.toFixed(3).padStart(13)} ${(cpu / med(base, 'cpuMsPerOrder')).toFixed(2).padStart(7)}   ${rs.map((r) => Math.round(r.rps)).join(', ')}`,
    );
  }
  console.log(`  spans exported: ${(spanBytes / 1024 / 1024).toFixed(1)} MiB of OTLP/HTTP JSON`);
}
