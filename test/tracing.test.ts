// One order followed across every hop (issue 17): placed through real nginx with a client's
// traceparent, it is continued by the orders service, the stock consumer, the worker, the ERP and
// the orders consumer. A real OTLP/HTTP receiver started here (JSON encoding, read as a collector
// reads it) gets the spans as one trace whose parents all exist, and every log line written while
// handling the order carries the trace id.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { RunningGateway } from '../gateway/nginx.js';
import { eventually } from '../harness/process.js';
import { getJson, sampleOrder, startGatewayFor, startStack, type Stack } from '../harness/stack.js';
import { requireProgram } from './support/programs.js';

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

  it('carries the client trace through nginx, the services, the worker and the ERP, as one trace with its parents', async () => {
    const res = await fetch(`${gateway.url}/api/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${TRACE}-${CLIENT_SPAN}-01` },
      body: JSON.stringify(sampleOrder(1)),
    });
    assert.equal(res.status, 202);
    const { id } = (await res.json()) as { id: string };
    await eventually(async () => (await getJson<{ status: string }>(`${stack.urls.orders}/api/orders/${id}`)).status === 'confirmed' || undefined, {
      what: 'the order confirmed',
    });

    // Every hop, in its own process, as the collector receives them (batches go out every 100 ms).
    const names = (service: string) => spans.filter((s) => s.traceId === TRACE && s.service === `woodytoys-${service}`).map((s) => s.name);
    await eventually(
      () =>
        names('orders').some((n) => n.startsWith('POST')) &&
        names('stock').includes('consume woodytoys.order.created') &&
        names('worker').includes('wait for pace') &&
        names('worker').includes('erp attempt') &&
        names('erp').some((n) => n.startsWith('POST')) &&
        names('orders').includes('consume woodytoys.order.confirmed') ||
        undefined,
      { what: `every hop's span (so far: ${spans.filter((s) => s.traceId === TRACE).map((s) => `${s.service}:${s.name}`).join(', ')})` },
    );
    const trace = spans.filter((s) => s.traceId === TRACE);
    const ids = new Set([CLIENT_SPAN, ...trace.map((s) => s.spanId)]);
    const orphans = trace.filter((s) => !s.parentSpanId || !ids.has(s.parentSpanId));
    assert.deepEqual(orphans.map((s) => `${s.service}:${s.name}`), [], 'every span hangs from the client span or another span of the trace');
    const attempt = trace.find((s) => s.name === 'erp attempt')!;
    const erpServer = trace.find((s) => s.service === 'woodytoys-erp' && s.name.startsWith('POST'))!;
    assert.equal(erpServer.parentSpanId, attempt.spanId, "the ERP's request continues the worker's attempt");
    assert.ok(trace.some((s) => s.name === 'wait in queue'), 'the time in the queue has its span');

    // Log lines written while handling the order carry its trace id.
    const lines = [stack.orders, stack.stock, stack.erp, ...stack.workers].flatMap((p) => p.logs).filter((l) => JSON.stringify(l).includes(id));
    assert.ok(lines.length > 0, 'the services log the order (at debug level)');
    assert.deepEqual(lines.filter((l) => l.trace_id !== TRACE).map((l) => `${l.service}: ${l.msg}`), [], 'every line about the order carries its trace id');
  });
});
