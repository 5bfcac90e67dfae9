// `npm run load`: sends orders (and optionally stock imports) through the gateway at a chosen rate,
// open loop (each send is due at start + i / rate, whatever the answers before it), or as fast as
// the gateway allows; shows progress, waits for the orders to settle, and prints a summary: the
// rate asked and achieved, accepted, rate-limited, confirmed, rejected with their reasons, latency
// percentiles (an HDR histogram).
//
// With `npm start`'s load-test key ($DATA_DIR/load-test-api-key) it sends that key, which the
// gateway counts in a bucket of its own at the key tier's rates; without it, every request counts
// against this machine's IP address, and the gateway's per-client limit shows as 429s.
//
//   npm run load -- --orders 500 --rate 50            50 orders/s through the gateway
//   npm run load -- --orders 200 --rate 0 --url http://127.0.0.1:3002   as fast as possible, direct
//   npm run load -- --imports 2 --import-size 5000    two bulk stock imports (admin key from $DATA_DIR)
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import * as hdr from 'hdr-histogram-js';
import { z } from 'zod';
import { gatewayEnv } from '../gateway/render.js';
import { loadConfig, parseConfig } from '../lib/config.js';
import { sleep } from '../lib/shutdown.js';
import { ADMIN_KEY_FILE, LOAD_TEST_KEY_FILE, readDevKey } from './dev-keys.js';
import { achievedRate, sendOnSchedule } from './load-schedule.js';

const env = loadConfig({
  DATA_DIR: z.string().min(1).default('./data'),
  GATEWAY_PORT: z.coerce.number().int().min(1).max(65535).default(8080),
  LOAD_URL: z.url().optional(),
  ADMIN_API_KEY: z.string().min(16).optional(),
});

const USAGE = `usage: npm run load -- [options]
  --url URL           where to send (default: LOAD_URL, else the gateway at http://127.0.0.1:$GATEWAY_PORT)
  --orders N          orders to send (default 200)
  --rate PER_SECOND   open-loop rate; 0 = as fast as answers come back, --concurrency at a time (default 20)
  --concurrency N     requests in progress at once with --rate 0 (default 32)
  --imports N         bulk stock imports to send after the orders (default 0)
  --import-size N     movements per import (default 1000)
  --wait SECONDS      how long to wait for the orders to settle (default 60)
  --api-key KEY       gateway key (X-Api-Key) listed in GATEWAY_API_KEYS (default: $DATA_DIR/${LOAD_TEST_KEY_FILE})
  --admin-key KEY     admin key for imports (default: ADMIN_API_KEY, else $DATA_DIR/${ADMIN_KEY_FILE})
  --json              print the summary as one JSON object`;

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: env.LOAD_URL ?? `http://127.0.0.1:${env.GATEWAY_PORT}` },
    orders: { type: 'string', default: '200' },
    rate: { type: 'string', default: '20' },
    concurrency: { type: 'string', default: '32' },
    imports: { type: 'string', default: '0' },
    'import-size': { type: 'string', default: '1000' },
    wait: { type: 'string', default: '60' },
    'api-key': { type: 'string' },
    'admin-key': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
const num = (name: string, value: string | undefined, min: number) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min) {
    console.error(`--${name} must be a number >= ${min}\n${USAGE}`);
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

const keyFile = join(env.DATA_DIR, LOAD_TEST_KEY_FILE);
const storedKey = readDevKey(env.DATA_DIR, LOAD_TEST_KEY_FILE);
const apiKey = args['api-key'] ?? storedKey;
const adminKey = args['admin-key'] ?? env.ADMIN_API_KEY ?? readDevKey(env.DATA_DIR, ADMIN_KEY_FILE);
const headers: Record<string, string> = { 'content-type': 'application/json', ...(apiKey ? { 'x-api-key': apiKey } : {}) };
/** What the person at the terminal should know before the run; stderr, so that --json stays parseable. */
const note = (text: string) => process.stderr.write(`${text}\n`);
if (args['api-key']) note('Sending the API key given with --api-key (X-Api-Key).');
else if (storedKey) note(`Sending npm start's load-test key from ${keyFile} (X-Api-Key): the gateway counts this run in a bucket of its own.`);
else note(`No load-test key at ${keyFile}: the gateway counts this run against this machine's IP address, at its per-client limit.`);

interface Result {
  status: number;
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

/** Latencies in microseconds: an HDR histogram keeps percentiles exact to 3 significant digits. */
const latencies = hdr.build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3, autoResize: true });

async function post(path: string, body: unknown): Promise<Result> {
  const started = performance.now();
  try {
    const res = await fetch(`${base}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    const json = (await res.json().catch(() => ({}))) as { id?: string };
    latencies.recordValue(Math.max(1, Math.round((performance.now() - started) * 1000)));
    return { status: res.status, ...(json.id ? { id: json.id } : {}) };
  } catch {
    return { status: 0 };
  }
}

/** A progress bar on stderr when it is a terminal; nothing otherwise (cli-progress draws only on a TTY). */
const progress = (label: string) =>
  new SingleBar({ stream: process.stderr, format: `${label.padEnd(9)} [{bar}] {value}/{total}  {detail}`, barsize: 30, hideCursor: true, clearOnComplete: false });

const catalogue = await products();
const results: Result[] = [];
const counts: Record<string, number> = {};
const sending = progress('sending');
sending.start(totalOrders, 0, { detail: '' });
const order = (n: number) =>
  post('/api/orders', { customer: { name: `Load ${n}`, email: `load${n}@example.com` }, items: [{ productId: catalogue[n % catalogue.length]!, quantity: 1 }] }).then((r) => {
    results.push(r);
    const key = String(r.status || 'error');
    counts[key] = (counts[key] ?? 0) + 1;
    sending.update(results.length, { detail: Object.entries(counts).map(([k, v]) => `${k} ${v}`).join('  ') });
  });

let sentAt: number[];
if (rate > 0) {
  const pending: Promise<void>[] = [];
  sentAt = await sendOnSchedule(totalOrders, rate, (n) => pending.push(order(n)));
  await Promise.all(pending);
} else {
  // As fast as answers come back: `concurrency` requests in progress at all times.
  sentAt = [];
  let next = 0;
  const lane = async () => {
    while (next < totalOrders) {
      const n = next++;
      sentAt.push(performance.now());
      await order(n);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, totalOrders) }, lane));
}
sending.stop();
const achieved = achievedRate(sentAt);

const importResults: { status: number; id?: string; done?: number; total?: number }[] = [];
for (let i = 0; i < imports; i++) {
  const movements = Array.from({ length: importSize }, (_, k) => ({ productId: catalogue[k % catalogue.length]!, delta: 1 + (k % 5) }));
  const importHeaders = { 'content-type': 'application/json', ...(adminKey ? { 'x-api-key': adminKey } : {}) };
  const res = await fetch(`${base}/api/stock/imports`, { method: 'POST', headers: importHeaders, body: JSON.stringify(movements) }).catch(() => undefined);
  const body = (res ? await res.json().catch(() => ({})) : {}) as { id?: string; total?: number };
  importResults.push({ status: res?.status ?? 0, ...(body.id ? { id: body.id } : {}), ...(body.total ? { total: body.total } : {}) });
}

// Wait for the accepted orders to settle, bounded by --wait: page through the order list (newest
// first, 100 a page) rather than asking for each order, so that waiting costs a few reads a second.
interface Settled {
  status: string;
  reason: string | null;
}
const settled = new Map<string, Settled>();
const accepted = results.filter((r) => r.status === 202 && r.id).map((r) => r.id!);
const waiting = () => accepted.filter((id) => (settled.get(id)?.status ?? 'pending') === 'pending');
const settling = progress('settling');
settling.start(accepted.length, 0, { detail: '' });
const deadline = Date.now() + waitSeconds * 1000;
while (Date.now() < deadline && waiting().length > 0) {
  // Each order by its id, as its customer follows it (the list of every order is the back office's).
  const queue = waiting();
  let pause = 0;
  const follow = async () => {
    for (let id = queue.pop(); id !== undefined && pause === 0; id = queue.pop()) {
      const res = await fetch(`${base}/api/orders/${id}`, { headers }).catch(() => undefined);
      if (res?.status === 429) pause = Number(res.headers.get('retry-after') ?? 1);
      if (!res?.ok) continue;
      const order = (await res.json()) as { status: string; reason?: string | null };
      if (order.status !== 'pending') settled.set(id, { status: order.status, reason: order.reason ?? null });
    }
  };
  await Promise.all(Array.from({ length: 16 }, follow));
  if (pause > 0) await sleep(1000 * pause);
  settling.update(accepted.length - waiting().length, { detail: '' });
  if (waiting().length > 0) await sleep(500);
}
settling.stop();
for (const imp of importResults) {
  if (!imp.id) continue;
  const res = await fetch(`${base}/api/stock/imports/${imp.id}`, { headers: { ...(adminKey ? { 'x-api-key': adminKey } : {}) } }).catch(() => undefined);
  if (res?.ok) Object.assign(imp, (await res.json()) as object);
}

const outcomes = [...settled.values()];
const by = (s: string) => outcomes.filter((o) => o.status === s).length;
/** Rejections grouped by the reason's first clause ("not enough yo-yo: 2 requested, 1 available" → "not enough yo-yo"). */
const reasons: Record<string, number> = {};
for (const o of outcomes.filter((o) => o.status === 'rejected')) {
  const reason = (o.reason ?? 'no reason given').split(':')[0]!;
  reasons[reason] = (reasons[reason] ?? 0) + 1;
}
const ms = (p: number) => Number((latencies.getValueAtPercentile(p) / 1000).toFixed(1));
const rateLimited = results.filter((r) => r.status === 429).length;
const summary = {
  url: base,
  apiKey: apiKey ? (args['api-key'] ? 'given' : keyFile) : null,
  sent: results.length,
  rate: { asked: rate, achieved: achieved === undefined ? null : Number(achieved.toFixed(2)) },
  accepted: accepted.length,
  rateLimited,
  otherErrors: results.filter((r) => r.status !== 202 && r.status !== 429).length,
  confirmed: by('confirmed'),
  rejected: by('rejected'),
  rejectedReasons: reasons,
  stillPending: accepted.length - by('confirmed') - by('rejected'),
  latencyMs: { p50: ms(50), p90: ms(90), p99: ms(99), max: Number((latencies.maxValue / 1000).toFixed(1)) },
  imports: importResults,
};

/** Why 429s happen and how to lift the limit, for a reader who expected the system, not the limiter. */
function rateLimitAdvice(): string[] {
  if (rateLimited === 0) return [];
  const defaults = parseConfig(gatewayEnv, {});
  if (apiKey) {
    return [
      `${rateLimited} orders were refused (429) by the gateway's limit for API keys: GATEWAY_KEY_WRITE_RATE_PER_MIN (default`,
      `${defaults.GATEWAY_KEY_WRITE_RATE_PER_MIN}/min) and GATEWAY_KEY_WRITE_BURST (default ${defaults.GATEWAY_KEY_WRITE_BURST}). Send more slowly, or raise them where the gateway starts.`,
    ];
  }
  return [
    `${rateLimited} orders were refused (429) by the gateway's per-client limit: every request came from one IP address,`,
    `which gets GATEWAY_WRITE_RATE_PER_MIN writes a minute (default ${defaults.GATEWAY_WRITE_RATE_PER_MIN}) with a burst of GATEWAY_WRITE_BURST (default ${defaults.GATEWAY_WRITE_BURST}).`,
    `To lift it, send an API key listed in GATEWAY_API_KEYS, which gets a bucket of its own at the key tier's rates:`,
    `\`npm start\` generates one into ${keyFile} and this tool sends it when it is there (or pass --api-key KEY).`,
  ];
}

if (args.json) {
  console.log(JSON.stringify(summary));
} else {
  const f = (n: number) => n.toFixed(1);
  const rows: [string, string | number][] = [
    ['target', base],
    ['API key', summary.apiKey ?? 'none (counted by IP address)'],
    ['orders sent', summary.sent],
    ['rate asked / achieved (orders/s)', `${rate === 0 ? 'as fast as allowed' : rate} / ${summary.rate.achieved ?? '-'}`],
    ['accepted (202)', summary.accepted],
    ['rate-limited (429)', summary.rateLimited],
    ['other errors', summary.otherErrors],
    ['confirmed', summary.confirmed],
    ['rejected', `${summary.rejected}${Object.keys(reasons).length ? ` (${Object.entries(reasons).map(([r, n]) => `${r}: ${n}`).join('; ')})` : ''}`],
    ['still pending', summary.stillPending],
    ['latency p50 / p90 / p99 / max (ms)', `${f(summary.latencyMs.p50)} / ${f(summary.latencyMs.p90)} / ${f(summary.latencyMs.p99)} / ${f(summary.latencyMs.max)}`],
    ...importResults.map((imp, i): [string, string] => [
      `import ${i + 1}`,
      `HTTP ${imp.status}${imp.id ? `, ${imp.done ?? '?'}/${imp.total ?? '?'} done` : ''}${imp.status === 401 ? ` (imports need the admin key: --admin-key, ADMIN_API_KEY or $DATA_DIR/${ADMIN_KEY_FILE})` : ''}`,
    ]),
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
  const advice = rateLimitAdvice();
  if (advice.length) console.log(`\n${advice.join('\n')}`);
}
