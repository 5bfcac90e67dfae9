// Bad input never gets a 5xx or crashes a process: fast-check sends malformed requests to every
// route that the services' own OpenAPI documents list, and garbage MQTT payloads to every consumed
// topic, then checks each process is still healthy and the dead letters name the reasons.
// FUZZ_RUNS sets the number of requests per route (npm test: a short run; npm run chaos: a long one).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import mqtt from 'mqtt';
import { eventually } from '../harness/process.js';
import { startStack, type Stack } from '../harness/stack.js';
import * as topics from '../lib/topics.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 100);
const SERVICES = ['orders', 'catalog', 'stock'];

interface Route {
  service: string;
  base: string;
  method: string;
  path: string;
}

const weird = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom('../../etc/passwd', '%00', '%', 'null', '-1', '1e309', ' ', '😀', 'a'.repeat(3000), "' OR 1=1 --"),
  fc.uuid(),
);
const hugeNumber = fc.constantFrom(1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, -1, 0, 0.5, 2 ** 63);
const deep = fc.integer({ min: 1, max: 20_000 }).map((n) => '['.repeat(n) + ']'.repeat(n));
const validOrder = { customer: { name: 'Ada', email: 'ada@example.com' }, items: [{ productId: 'wooden-train', quantity: 1 }] };
const mutatedOrder = fc
  .record({
    path: fc.constantFrom('customer', 'customer.name', 'customer.email', 'items', 'items.0', 'items.0.quantity', 'items.0.productId', 'extra'),
    value: fc.oneof(fc.jsonValue(), hugeNumber, weird),
  })
  .map(({ path, value }) => {
    const body = structuredClone(validOrder) as Record<string, unknown>;
    const keys = path.split('.');
    let target = body as Record<string, unknown>;
    for (const k of keys.slice(0, -1)) target = target[k] as Record<string, unknown>;
    target[keys.at(-1)!] = value;
    return JSON.stringify(body);
  });
const body = fc.oneof(
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 200 }),
  mutatedOrder,
  deep,
  fc.constantFrom('', '{', '{"a":', 'null', '[]', '{}', '\u0000', JSON.stringify({ items: Array(5000).fill({ productId: 'x', quantity: 1 }) })),
  fc.integer({ min: 1, max: 3 }).map((mb) => `[${'"x",'.repeat(mb * 200_000)}"x"]`),
);
/** Bodies print as their length and start, so a failure report stays readable. */
const bodies = body.map((value) => ({ value, [fc.toStringMethod]: () => `<${value.length} chars: ${JSON.stringify(value.slice(0, 60))}>` }));
const headers = fc.record(
  {
    'content-type': fc.constantFrom('application/json', 'text/plain', 'application/x-ndjson', 'application/json; charset=utf-16', 'multipart/form-data', '*/*'),
    'idempotency-key': fc.string({ minLength: 1, maxLength: 300 }).filter((s) => /^[\x21-\x7e]+$/.test(s)),
    'x-api-key': fc.string({ minLength: 1, maxLength: 100 }).filter((s) => /^[\x21-\x7e]+$/.test(s)),
    'x-request-id': fc.string({ minLength: 1, maxLength: 300 }).filter((s) => /^[\x21-\x7e]+$/.test(s)),
  },
  { requiredKeys: [] },
);
const query = fc.dictionary(fc.constantFrom('limit', 'cursor', 'page', 'status', 'q', 'category', 'minPrice', 'maxPrice', 'x'), weird, { maxKeys: 4 });

async function routes(stack: Stack): Promise<Route[]> {
  const found: Route[] = [];
  const urls = stack.urls as Record<string, string>;
  for (const service of SERVICES) {
    const base = urls[service];
    if (!base) continue;
    const doc = (await (await fetch(`${base}/api/${service}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const method of Object.keys(ops)) found.push({ service, base, method: method.toUpperCase(), path });
    }
  }
  return found;
}

describe('fuzzing every HTTP route and every consumed topic', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ erpCapacityRu: 100_000 });
  });
  after(async () => {
    await stack?.stop();
  });

  it('never answers 5xx, and every error is application/problem+json', async (t) => {
    const all = await routes(stack);
    assert.ok(all.length >= 2, `found routes: ${all.map((r) => `${r.method} ${r.path}`).join(', ')}`);
    let requests = 0;
    for (const route of all) {
      await fc.assert(
        fc.asyncProperty(fc.array(weird, { minLength: 3, maxLength: 3 }), query, headers, bodies, async (params, q, h, { value: b }) => {
          let i = 0;
          const path = route.path.replace(/\{[^}]+\}/g, () => encodeURIComponent(params[i++]!));
          const url = new URL(path, route.base);
          for (const [k, v] of Object.entries(q)) url.searchParams.set(k, v);
          const withBody = !['GET', 'HEAD', 'DELETE'].includes(route.method);
          let res: Response;
          try {
            res = await fetch(url, { method: route.method, headers: h, ...(withBody ? { body: b } : {}) });
          } catch (err) {
            throw new Error(`${route.method} ${url.pathname}: ${(err as Error).message} ${String((err as { cause?: unknown }).cause ?? '')}`);
          }
          const text = await res.text();
          requests++;
          assert.ok(res.status < 500, `${route.method} ${url.pathname} → ${res.status}: ${text.slice(0, 300)}`);
          if (res.status >= 400) assert.equal(res.headers.get('content-type'), 'application/problem+json', `${route.method} ${path} ${res.status}`);
        }),
        { numRuns: RUNS, endOnFailure: true },
      ).catch((err: Error) => {
        // fast-check keeps the failing assertion in `cause`; show it, not only the counterexample.
        throw new Error(`${err.message}\n${(err.cause as Error | undefined)?.message ?? ''}`);
      });
    }
    assert.ok(requests >= all.length * RUNS);
    t.diagnostic(`${requests} malformed requests over ${all.length} routes, none answered 5xx`);
    for (const p of [stack.orders, stack.erp, stack.broker, ...stack.workers]) assert.equal(p.child.exitCode, null, `${p.name} must still run`);
    const health = await fetch(`${stack.urls.orders}/healthz`);
    assert.equal(health.status, 200);
  });

  it('sends garbage and oversized MQTT payloads to the dead letters, and consumers carry on', async () => {
    const consumed = (Object.values(topics) as unknown[])
      .filter((t): t is { topic: string; type: string } => typeof t === 'object' && t !== null && 'topic' in t && 'type' in t)
      .map((t) => t.topic)
      // Public topics are for displays, not consumed (the one a service consumes has a wildcard).
      .filter((t) => !t.includes('+') && !t.includes('deadletter') && !t.startsWith(`${topics.PUBLIC_ROOT}/`));
    const client = await mqtt.connectAsync(stack.urls.mqtt, { clientId: 'fuzz-probe', clean: true });
    const deadLetters: { reason: string; topic: string }[] = [];
    client.on('message', (_t, payload) => {
      const event = JSON.parse(payload.toString()) as { data: { reason: string; topic: string } };
      deadLetters.push(event.data);
    });
    await client.subscribeAsync('woodytoys/deadletter/#', { qos: 1 });
    const garbage = ['not json', '{"specversion":"1.0"}', JSON.stringify({ specversion: '1.0', id: 'x', type: 'woodytoys.order.created', source: 's', time: 'now', data: {} }), 'x'.repeat(300 * 1024)];
    for (const topic of consumed) for (const payload of garbage) await client.publishAsync(topic, payload, { qos: 1 });
    // Every topic someone consumes yields dead letters; each names a reason.
    await eventually(() => consumed.every((t) => deadLetters.some((d) => d.topic === t)) || undefined, {
      timeoutMs: 30_000,
      what: `dead letters for ${consumed.join(', ')} (got ${[...new Set(deadLetters.map((d) => d.topic))].join(', ')})`,
    }).catch((err: Error) => {
      // Topics nobody subscribes to (in this stack) cannot produce dead letters; report which.
      const missing = consumed.filter((t) => !deadLetters.some((d) => d.topic === t));
      assert.fail(`${err.message}; missing: ${missing.join(', ')}`);
    });
    for (const d of deadLetters) assert.ok(d.reason.length > 0);
    assert.ok(deadLetters.some((d) => /exceeds/.test(d.reason)), 'the oversized payload is refused by size');
    await client.endAsync();
    // And the system still works: a valid order is confirmed.
    const res = await fetch(`${stack.urls.orders}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(validOrder) });
    assert.equal(res.status, 202);
    const { id } = (await res.json()) as { id: string };
    await eventually(async () => ((await (await fetch(`${stack.urls.orders}/api/orders/${id}`)).json()) as { status: string }).status === 'confirmed' || undefined, {
      what: 'a valid order to be confirmed after the garbage',
    });
  });
});
