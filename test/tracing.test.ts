// One order followed across every hop (issue 17): placed through real nginx with a client's
// traceparent, it is continued by the orders service, the stock consumer, the worker, the ERP and
// the orders consumer. A real OTLP/HTTP receiver started here (JSON encoding, read as a collector
// reads it) gets the spans as one trace whose parents all exist; every event and log line about
// the order and every ERP call carries the trace id; and the order's timeline (built by the
// services, no trace backend) lists each hop in order, the ERP's forced 429 as an attempt of its own.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { RunningGateway } from '../gateway/nginx.js';
import mqtt from 'mqtt';
import { eventually } from '../harness/process.js';
import { ADMIN_KEY, getJson, sampleOrder, startGatewayFor, startStack, type Stack } from '../harness/stack.js';
import { requireProgram } from './support/programs.js';
import { publicOrderRef } from '../lib/topics.js';

interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  service: string;
  attributes: { key: string; value: Record<string, unknown> }[];
}

const skip = requireProgram('nginx', 'nginx');
const TRACE = '0af7651916cd43dd8448eb211c80319c';
const CLIENT_SPAN = 'b7ad6b7169203331';

describe('tracing one order across every hop', { skip }, () => {
  let stack: Stack;
  let gateway: RunningGateway;
  let receiver: Server;
  const spans: ReceivedSpan[] = [];

  before(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        for (const rs of body.resourceSpans ?? []) {
          const service = rs.resource?.attributes?.find((a: { key: string }) => a.key === 'service.name')?.value?.stringValue ?? '?';
          for (const ss of rs.scopeSpans ?? []) for (const span of ss.spans ?? []) spans.push({ ...span, service });
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    receiver.listen(0, '127.0.0.1');
    await once(receiver, 'listening');
    const endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    stack = await startStack({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_BSP_SCHEDULE_DELAY: '100', LOG_LEVEL: 'debug' }, stock: { 'wooden-train': 1000 } });
    gateway = await startGatewayFor(stack);
  });

  after(async () => {
    await gateway?.stop();
    await stack?.stop();
    receiver?.close();
  });

  it('carries the client trace through nginx, the services, the worker and the ERP, as one trace with its parents', async (t) => {
    // Every event on the broker, to find those the order causes (the test's client may read everything).
    const events: { topic: string; event: { subject?: string; traceparent?: string; data?: { orderId?: string } } }[] = [];
    const watcher = await mqtt.connectAsync(stack.urls.mqtt, { clientId: 'tracing-watcher', clean: true, protocolVersion: 4 });
    watcher.on('message', (topic, payload) => events.push({ topic, event: JSON.parse(payload.toString()) }));
    await watcher.subscribeAsync('woodytoys/#', { qos: 1 });
    // The ERP answers this customer's first attempt with a 429 (ERP_THROTTLED_DOMAINS' default domain).
    const order = { ...sampleOrder(1), customer: { name: 'Traced', email: 'traced@throttled.example' } };
    const res = await fetch(`${gateway.url}/api/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${TRACE}-${CLIENT_SPAN}-01` },
      body: JSON.stringify(order),
    });
    assert.equal(res.status, 202);
    const { id } = (await res.json()) as { id: string };
    await eventually(async () => (await getJson<{ status: string }>(`${stack.urls.orders}/api/orders/${id}`)).status === 'confirmed' || undefined, {
      what: 'the order confirmed',
    });

    // Every hop, in its own process, as the collector receives them (batches go out every 100 ms; a
    // parent span ends, and is sent, after its children, so the wait is for the whole tree).
    const names = (service: string) => spans.filter((s) => s.traceId === TRACE && s.service === `woodytoys-${service}`).map((s) => s.name);
    const orphans = () => {
      const received = spans.filter((s) => s.traceId === TRACE);
      const ids = new Set([CLIENT_SPAN, ...received.map((s) => s.spanId)]);
      return received.filter((s) => !s.parentSpanId || !ids.has(s.parentSpanId)).map((s) => `${s.service}:${s.name}`);
    };
    await eventually(
      () =>
        (names('orders').some((n) => n.startsWith('POST')) &&
          names('orders').includes('outbox publish') &&
          names('stock').includes('consume woodytoys.order.created') &&
          names('worker').includes('consume woodytoys.stock.reserved') &&
          names('worker').filter((n) => n === 'erp attempt').length === 2 &&
          names('erp').filter((n) => n.startsWith('POST')).length === 2 &&
          names('orders').includes('consume woodytoys.order.confirmed') &&
          orphans().length === 0) ||
        undefined,
      { what: `every hop's span, each with its parent (so far: ${spans.filter((s) => s.traceId === TRACE).map((s) => `${s.service}:${s.name}`).join(', ')}; without a parent: ${orphans().join(', ')})` },
    );
    const trace = spans.filter((s) => s.traceId === TRACE);
    assert.deepEqual(orphans(), [], 'every span hangs from the client span or another span of the trace');
    // Both ERP calls (the 429 and the one that recorded the order) continue the worker's attempts.
    const attempts = trace.filter((s) => s.name === 'erp attempt').map((s) => s.spanId);
    const erpRequests = trace.filter((s) => s.service === 'woodytoys-erp' && s.name.startsWith('POST'));
    assert.deepEqual(erpRequests.map((s) => s.parentSpanId).sort(), [...attempts].sort(), "each ERP request continues one of the worker's attempts");
    assert.deepEqual(
      trace.filter((s) => s.name === 'erp attempt').map((s) => s.attributes.find((a) => a.key === 'erp.result')?.value.stringValue).sort(),
      ['recorded', 'throttled'],
    );
    assert.ok(trace.some((s) => s.name === 'wait in queue'), 'the time in the queue has its span');

    assert.ok(trace.some((s) => s.name === 'outbox publish' && s.service === 'woodytoys-orders'), 'the outbox publish has its span');

    // Log lines written while handling the order carry its trace id.
    const lines = [stack.orders, stack.stock, stack.erp, ...stack.workers].flatMap((p) => p.logs).filter((l) => JSON.stringify(l).includes(id));
    assert.ok(lines.length > 0, 'the services log the order (at debug level)');
    assert.deepEqual(lines.filter((l) => l.trace_id !== TRACE).map((l) => `${l.service}: ${l.msg}`), [], 'every line about the order carries its trace id');

    // Every event the order caused carries the trace: created, reserved, confirmed.
    const about = () => events.filter((e) => e.event.data?.orderId === id || e.event.subject === id);
    await eventually(() => about().some((e) => e.topic === 'woodytoys/orders/confirmed') || undefined, { what: 'the confirmation on the broker' });
    assert.deepEqual(
      [...new Set(about().map((e) => e.topic))].sort(),
      ['woodytoys/orders/confirmed', 'woodytoys/orders/created', 'woodytoys/stock/reserved'],
      'the saga events of the order',
    );
    assert.deepEqual(about().filter((e) => e.event.traceparent?.split('-')[1] !== TRACE).map((e) => e.topic), [], 'every event of the order carries its trace id');
    await watcher.endAsync();

    // The timeline, through the gateway as a client reads it: each hop in order.
    type Hop = { name: string; service: string; start: string; durationMs: number | null; detail?: Record<string, unknown> };
    const timeline = await getJson<{ traceId: string; hops: Hop[] }>(`${gateway.url}/api/orders/${id}/timeline`);
    assert.equal(timeline.traceId, TRACE);
    t.diagnostic(timeline.hops.map((h) => JSON.stringify([h.service, h.name, h.durationMs, h.detail ?? null])).join('\n'));
    assert.deepEqual(
      timeline.hops.map((h) => `${h.service}: ${h.name}`),
      [
        'orders: accept',
        'orders: outbox publish',
        'stock: wait in queue',
        'stock: stock reservation',
        'worker: wait in queue',
        'worker: wait for pace',
        'worker: erp attempt',
        'worker: wait for pace',
        'worker: erp attempt',
        'orders: wait in queue',
        'orders: outcome applied',
      ],
    );
    assert.deepEqual(timeline.hops.filter((h) => h.name === 'erp attempt').map((h) => h.detail), [
      { attempt: 1, result: 'throttled', status: 429, retryAfterMs: 200 },
      { attempt: 2, result: 'recorded', status: 201 },
    ]);
    assert.equal(timeline.hops.find((h) => h.service === 'stock' && h.name === 'wait in queue')?.detail?.topic, 'woodytoys/orders/created', 'the wait in the group queue names its topic');
    for (const h of timeline.hops) assert.ok(typeof h.durationMs === 'number' && h.durationMs >= 0, `${h.service}: ${h.name} has a duration`);
    const starts = timeline.hops.map((h) => Date.parse(h.start));
    assert.deepEqual(starts, [...starts].sort((a, b) => a - b), 'oldest first');
    // The second attempt waited at least the 429's Retry-After.
    const [first, second] = timeline.hops.filter((h) => h.name === 'erp attempt');
    assert.ok(Date.parse(second!.start) - (Date.parse(first!.start) + first!.durationMs!) >= 200, 'the retry honoured Retry-After');
    // The same timeline by the order's public reference (what the dashboard knows), and a stranger's miss.
    const byRef = await getJson<{ ref: string; hops: Hop[] }>(`${gateway.url}/api/orders/${publicOrderRef(id)}/timeline`);
    assert.deepEqual(byRef.hops, timeline.hops);
    const missing = await fetch(`${gateway.url}/api/orders/0123456789abcdef/timeline`);
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get('content-type'), 'application/problem+json');
    const malformed = await fetch(`${gateway.url}/api/orders/not-an-order/timeline`);
    assert.equal(malformed.status, 400);
  });
  it('gives each stock import its own trace: every movement event, worker attempt and ERP call of the import', async () => {
    const importTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const movements = [
      { productId: 'wooden-train', delta: 5 },
      { productId: 'wooden-train', delta: -2 },
    ];
    const res = await fetch(`${gateway.url}/api/stock/imports`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', 'x-api-key': ADMIN_KEY, traceparent: `00-${importTrace}-00f067aa0ba902b7-01` },
      body: movements.map((m) => JSON.stringify(m)).join('\n') + '\n',
    });
    assert.equal(res.status, 202);
    const of = (service: string, name: string) => spans.filter((s) => s.traceId === importTrace && s.service === `woodytoys-${service}` && s.name === name);
    await eventually(
      () =>
        (of('worker', 'consume woodytoys.stock.movement').length === 2 &&
          of('worker', 'erp attempt').length >= 2 &&
          of('stock', 'consume woodytoys.stock.movement-processed').length === 2 &&
          // Each process exports on its own schedule: the ERP's spans may come after the others'.
          spans.filter((s) => s.traceId === importTrace && s.service === 'woodytoys-erp').length >= 2) ||
        undefined,
      { what: `the import's spans (so far: ${spans.filter((s) => s.traceId === importTrace).map((s) => `${s.service}:${s.name}`).join(', ')})` },
    );
    assert.ok(spans.filter((s) => s.traceId === importTrace && s.service === 'woodytoys-erp').length >= 2, "the ERP's requests continue the import's trace");
  });
});
