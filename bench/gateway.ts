// What the nginx gateway costs: `POST /api/orders` straight to the orders service and through
// nginx (the repository's nginx.conf, rendered), with the same autocannon load, in one run.
// Only the broker and the orders service run, so the saga's consumers (stock, workers, ERP) do not
// compete for the CPU; the orders service still commits each order and its outbox row and
// publishes the event. The gateway's limits are raised far above the load so this measures the
// proxy, not the limiter; its access log stays on, as in production. The two targets alternate for
// BENCH_ROUNDS rounds and the median of each is reported, with the ratio.
//
//   npm run bench:gateway    (BENCH_DURATION=5 seconds per run, BENCH_CONNECTIONS=50, BENCH_ROUNDS=3)
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { startGateway } from '../gateway/nginx.js';
import { freePort, startProcess, type Proc } from '../harness/process.js';
import { findProgram } from '../lib/programs.js';
import { sampleOrder } from '../harness/stack.js';
import { median } from './figures.js';

const DURATION = Number(process.env.BENCH_DURATION ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

if (!findProgram('nginx')) {
  console.error('bench:gateway needs nginx (apt-get install -y nginx)');
  process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), 'bench-gateway-'));
chmodSync(dir, 0o755); // nginx's workers run as nobody when this runs as root
const procs: Proc[] = [];
let stopGateway = async () => {};

interface Run {
  rps: number;
  p50: number;
  p99: number;
  failed: number;
}

async function load(base: string, duration: number): Promise<Run> {
  const result = await autocannon({
    url: `${base}/api/orders`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(sampleOrder(7)),
    connections: CONNECTIONS,
    duration,
  });
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, failed: result.non2xx + result.errors };
}

try {
  const [mqttPort, wsPort, brokerHttp, ordersPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const common = { DATA_DIR: dir, HTTP_HOST: '127.0.0.1', MQTT_URL: `mqtt://127.0.0.1:${mqttPort}`, BROKER_ALLOW_ANONYMOUS: 'true' };
  procs.push(await startProcess({ name: 'broker', entry: 'broker/main.ts', env: { ...common, MQTT_PORT: String(mqttPort), MQTT_WS_PORT: String(wsPort), HTTP_PORT: String(brokerHttp) } }));
  procs.push(await startProcess({ name: 'orders', entry: 'api/orders/main.ts', env: { ...common, HTTP_PORT: String(ordersPort) } }));
  const direct = `http://127.0.0.1:${ordersPort}`;
  const gateway = await startGateway({
    GATEWAY_RUNTIME_DIR: join(dir, 'gateway'),
    GATEWAY_PORT: String(await freePort()),
    ORDERS_UPSTREAM: `127.0.0.1:${ordersPort}`,
    MQTT_WS_UPSTREAM: `127.0.0.1:${wsPort}`,
    GATEWAY_READ_RATE_PER_MIN: '60000000',
    GATEWAY_WRITE_RATE_PER_MIN: '60000000',
    GATEWAY_READ_BURST: '1000000',
    GATEWAY_WRITE_BURST: '1000000',
    GATEWAY_CONN_PER_IP: '60000', // nginx's maximum is 65535
  });
  stopGateway = () => gateway.stop();

  // Warm up both paths (JIT, SQLite pages, nginx's upstream keep-alive connections).
  await load(direct, 2);
  await load(gateway.url, 2);
  const runs: Record<'direct' | 'nginx', Run[]> = { direct: [], nginx: [] };
  for (let round = 0; round < ROUNDS; round++) {
    runs.direct.push(await load(direct, DURATION));
    runs.nginx.push(await load(gateway.url, DURATION));
  }

  const summary = (rs: Run[]) => ({ rps: median(rs.map((r) => r.rps)), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)), failed: rs.reduce((n, r) => n + r.failed, 0) });
  const d = summary(runs.direct);
  const n = summary(runs.nginx);
  const cell = (v: number | string, w: number) => String(v).padStart(w);
  console.log(`\nPOST /api/orders, ${CONNECTIONS} connections, median of ${ROUNDS} alternating ${DURATION} s runs, ${cpus().length} CPUs, nginx worker_processes auto`);
  console.log(`${'target'.padEnd(15)}${cell('req/s', 8)}${cell('p50 ms', 9)}${cell('p99 ms', 9)}${cell('failed', 8)}   req/s per run`);
  for (const [name, s, rs] of [['direct', d, runs.direct], ['through nginx', n, runs.nginx]] as const) {
    console.log(`${name.padEnd(15)}${cell(s.rps.toFixed(0), 8)}${cell(s.p50, 9)}${cell(s.p99, 9)}${cell(s.failed, 8)}   ${rs.map((r) => r.rps.toFixed(0)).join(', ')}`);
  }
  console.log(`ratio nginx/direct: req/s ${(n.rps / d.rps).toFixed(2)}, p50 ${(n.p50 / Math.max(d.p50, 1)).toFixed(2)}, p99 ${(n.p99 / Math.max(d.p99, 1)).toFixed(2)}`);
  if (d.failed + n.failed > 0) console.log('warning: some requests failed (non-2xx or errors); the figures are not comparable');
} finally {
  await stopGateway();
  for (const p of procs.reverse()) await p.stop();
  rmSync(dir, { recursive: true, force: true });
}
