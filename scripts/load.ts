// `npm run load`: sends orders (and optionally stock imports) at a chosen rate, or as fast as the
// gateway allows, shows a progress bar, then waits for the orders to settle and prints a summary:
// sent, accepted, rate-limited, confirmed, rejected, and latency percentiles.
//
//   npm run load -- --orders 500 --rate 50            50 orders/s through the gateway
//   npm run load -- --orders 200 --rate 0 --url http://127.0.0.1:3002   as fast as possible, direct
//   npm run load -- --imports 2 --import-size 5000    two bulk stock imports
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.LOAD_URL ?? 'http://127.0.0.1:8080' },
    orders: { type: 'string', default: '200' },
    rate: { type: 'string', default: '20' },
    concurrency: { type: 'string', default: '32' },
    imports: { type: 'string', default: '0' },
    'import-size': { type: 'string', default: '1000' },
    wait: { type: 'string', default: '60' },
    'api-key': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log('usage: npm run load -- [--url URL] [--orders N] [--rate PER_SECOND|0] [--concurrency N] [--imports N] [--import-size N] [--wait SECONDS] [--api-key KEY] [--json]');
  process.exit(0);
}
const num = (name: string, value: string | undefined, min: number) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min) {
    console.error(`--${name} must be a number >= ${min}`);
    process.exit(2);
  }
  return n;
};
const base = new URL(args.url!).toString().replace(/\/$/, '');
const totalOrders = num('orders', args.orders, 0);
const rate = num('rate', args.rate, 0);
const concurrency = num('concurrency', args.concurrency, 1);
const imports = num('imports', args.imports, 0);
const importSize = num('import-size', args['import-size'], 1);
const waitSeconds = num('wait', args.wait, 0);
const headers: Record<string, string> = { 'content-type': 'application/json', ...(args['api-key'] ? { 'x-api-key': args['api-key'] } : {}) };

interface Result {
  status: number;
  ms: number;
  id?: string;
}

async function products(): Promise<string[]> {
  try {
    const res = await fetch(`${base}/api/catalog/products?limit=100`, { headers });
    const body = (await res.json()) as { items?: { id: string }[] };
    const ids = body.items?.map((p) => p.id) ?? [];
    if (ids.length > 0) return ids;
  } catch {
    // no catalog reachable: fall back to one product
  }
  return ['wooden-train'];
}

async function post(path: string, body: unknown): Promise<Result> {
  const started = performance.now();
  try {
    const res = await fetch(`${base}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    const json = (await res.json().catch(() => ({}))) as { id?: string };
    return { status: res.status, ms: performance.now() - started, ...(json.id ? { id: json.id } : {}) };
  } catch {
    return { status: 0, ms: performance.now() - started };
  }
}

function bar(done: number, total: number, counts: Record<string, number>) {
  if (!process.stderr.isTTY) return;
  const width = 30;
  const filled = total === 0 ? width : Math.round((done / total) * width);
  const detail = Object.entries(counts)
    .map(([k, v]) => `${k} ${v}`)
    .join('  ');
  process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}  ${detail}   `);
}

const percentile = (sorted: number[], p: number) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!);

const catalogue = await products();
const results: Result[] = [];
const counts: Record<string, number> = {};
let inFlight = 0;
const started = performance.now();
await new Promise<void>((resolve) => {
  let sent = 0;
  const next = () => {
    if (sent >= totalOrders) {
      if (inFlight === 0) resolve();
      return;
    }
    if (inFlight >= concurrency) return;
    const n = sent++;
    inFlight++;
    const items = [{ productId: catalogue[n % catalogue.length]!, quantity: 1 }];
    void post('/api/orders', { customer: { name: `Load ${n}`, email: `load${n}@example.com` }, items }).then((r) => {
      inFlight--;
      results.push(r);
      counts[String(r.status || 'error')] = (counts[String(r.status || 'error')] ?? 0) + 1;
      bar(results.length, totalOrders, counts);
      if (rate === 0) next();
      else if (sent >= totalOrders && inFlight === 0) resolve();
    });
    if (rate === 0) next();
  };
  if (totalOrders === 0) return resolve();
  if (rate === 0) for (let i = 0; i < concurrency; i++) next();
  else {
    const timer = setInterval(() => {
      if (sent >= totalOrders) return clearInterval(timer);
      next();
    }, 1000 / rate);
  }
});
const sendSeconds = (performance.now() - started) / 1000;
if (process.stderr.isTTY) process.stderr.write('\n');

const importResults: { status: number; id?: string; done?: number; total?: number }[] = [];
for (let i = 0; i < imports; i++) {
  const movements = Array.from({ length: importSize }, (_, k) => ({ productId: catalogue[k % catalogue.length]!, delta: 1 + (k % 5) }));
  const res = await fetch(`${base}/api/stock/imports`, { method: 'POST', headers, body: JSON.stringify(movements) }).catch(() => undefined);
  const body = (res ? await res.json().catch(() => ({})) : {}) as { id?: string; total?: number };
  importResults.push({ status: res?.status ?? 0, ...(body.id ? { id: body.id } : {}), ...(body.total ? { total: body.total } : {}) });
}

// Wait for accepted orders to settle (poll each once per round), bounded by --wait.
const status = new Map<string, string>();
const accepted = results.filter((r) => r.status === 202 && r.id);
const deadline = Date.now() + waitSeconds * 1000;
while (Date.now() < deadline && accepted.some((r) => (status.get(r.id!) ?? 'pending') === 'pending')) {
  for (const r of accepted) {
    if ((status.get(r.id!) ?? 'pending') !== 'pending') continue;
    const res = await fetch(`${base}/api/orders/${r.id}`, { headers }).catch(() => undefined);
    if (res?.ok) status.set(r.id!, ((await res.json()) as { status: string }).status);
    else if (res?.status === 429) await new Promise((w) => setTimeout(w, 1000));
  }
  bar([...status.values()].filter((s) => s !== 'pending').length, accepted.length, { settled: [...status.values()].filter((s) => s !== 'pending').length });
  await new Promise((w) => setTimeout(w, 500));
}
for (const imp of importResults) {
  if (!imp.id) continue;
  const res = await fetch(`${base}/api/stock/imports/${imp.id}`, { headers }).catch(() => undefined);
  if (res?.ok) Object.assign(imp, (await res.json()) as object);
}
if (process.stderr.isTTY) process.stderr.write('\n');

const latencies = results.map((r) => r.ms).sort((a, b) => a - b);
const by = (s: string) => [...status.values()].filter((v) => v === s).length;
const summary = {
  url: base,
  sent: results.length,
  seconds: Number(sendSeconds.toFixed(2)),
  accepted: accepted.length,
  rateLimited: results.filter((r) => r.status === 429).length,
  otherErrors: results.filter((r) => r.status !== 202 && r.status !== 429).length,
  confirmed: by('confirmed'),
  rejected: by('rejected'),
  stillPending: accepted.length - by('confirmed') - by('rejected'),
  latencyMs: { p50: percentile(latencies, 50), p90: percentile(latencies, 90), p99: percentile(latencies, 99), max: latencies.at(-1) ?? 0 },
  imports: importResults,
};
if (args.json) {
  console.log(JSON.stringify(summary));
} else {
  const f = (n: number) => n.toFixed(1);
  const rows: [string, string | number][] = [
    ['target', base],
    ['orders sent', summary.sent],
    ['sending took (s)', summary.seconds],
    ['accepted (202)', summary.accepted],
    ['rate-limited (429)', summary.rateLimited],
    ['other errors', summary.otherErrors],
    ['confirmed', summary.confirmed],
    ['rejected', summary.rejected],
    ['still pending', summary.stillPending],
    ['latency p50 / p90 / p99 / max (ms)', `${f(summary.latencyMs.p50)} / ${f(summary.latencyMs.p90)} / ${f(summary.latencyMs.p99)} / ${f(summary.latencyMs.max)}`],
    ...importResults.map((imp, i): [string, string] => [
      `import ${i + 1}`,
      `HTTP ${imp.status}${imp.id ? `, ${imp.done ?? '?'}/${imp.total ?? '?'} done` : ''}${imp.status === 401 ? ' (imports need --api-key <ADMIN_API_KEY>)' : ''}`,
    ]),
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
}
