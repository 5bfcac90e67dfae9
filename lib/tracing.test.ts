// Tracing with an exporter, against a real OTLP/HTTP receiver started here (JSON encoding, read as a
// collector would): a span continues a client's traceparent, its children keep the trace and their
// parents, and the ids reach log lines.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';
import { createEvent, decodeEvent, defineEvent, type CloudEvent } from './events.js';
import { createApp } from './http.js';
import { createLogger } from './log.js';
import { createMetrics } from './metrics.js';
import { carrierOf, contextFrom, exportRequested, inSpan, startTracing, traceFields, tracesEndpoint } from './tracing.js';

interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
}

const probe = defineEvent({ topic: 'woodytoys/test/probe', type: 'woodytoys.test.probe', data: z.object({ n: z.number() }), summary: 'a test event', example: { n: 1 } });

let current: { shutdown(): Promise<void> } | undefined;

describe('tracing', () => {
  it('reads the standard variables', () => {
    assert.equal(exportRequested({}), false);
    assert.equal(exportRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), true);
    assert.equal(exportRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x', OTEL_SDK_DISABLED: 'true' }), false);
    assert.equal(exportRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x', OTEL_TRACES_EXPORTER: 'none' }), false);
    assert.equal(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318/' }), 'http://127.0.0.1:4318/v1/traces');
    assert.equal(tracesEndpoint({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c/t', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://b' }), 'http://c/t');
  });

  it('continues a client traceparent and exports one trace with correct parents', async () => {
    const spans: ReceivedSpan[] = [];
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) spans.push(...ss.spans);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    receiver.listen(0, '127.0.0.1');
    await once(receiver, 'listening');
    const { port } = receiver.address() as AddressInfo;
    try {
      const tracing = (current = startTracing('test', { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}` }));
      assert.equal(tracing.exporting, true);
      const clientTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
      const clientSpan = '00f067aa0ba902b7';
      let onward: string | undefined;
      let logged: ReturnType<typeof traceFields> = {};
      let event: CloudEvent | undefined;
      await inSpan(tracing.tracer, 'accept order', { parent: contextFrom(`00-${clientTrace}-${clientSpan}-01`) }, async () => {
        await inSpan(tracing.tracer, 'publish', {}, async () => {
          onward = carrierOf().traceparent;
          logged = traceFields();
          event = createEvent(probe, { n: 1 }, { source: 'test' });
        });
      });
      assert.equal(traceFields().trace_id, undefined, 'no trace outside a span');
      assert.equal(logged.trace_id, clientTrace);
      assert.match(onward ?? '', new RegExp(`^00-${clientTrace}-[0-9a-f]{16}-01$`));
      // The event carries the context it was made in (CloudEvents distributed-tracing extension) …
      assert.equal(event?.traceparent, onward);
      const decoded = decodeEvent(probe, JSON.stringify(event));
      assert.ok(decoded.ok && decoded.event.traceparent === onward);
      // … and a malformed one is dropped without refusing the event.
      const forged = decodeEvent(probe, JSON.stringify({ ...event, traceparent: 'not-a-trace' }));
      assert.ok(forged.ok && forged.event.traceparent === undefined);
      // An HTTP request continues the caller's traceparent: the handler and its log lines see its trace id.
      const app = createApp({ log: createLogger('test', 'silent'), metrics: createMetrics('tracing-test'), ready: () => ({}) });
      app.get('/where', (c) => c.json(traceFields()));
      const res = await app.request('/where', { headers: { traceparent: `00-${clientTrace}-${clientSpan}-01` } });
      assert.equal(((await res.json()) as { trace_id?: string }).trace_id, clientTrace);
      await tracing.shutdown();
      const accept = spans.find((s) => s.name === 'accept order');
      const publish = spans.find((s) => s.name === 'publish');
      assert.ok(accept && publish, `received ${spans.map((s) => s.name).join(', ')}`);
      assert.equal(accept.traceId, clientTrace);
      assert.equal(accept.parentSpanId, clientSpan);
      assert.equal(publish.traceId, clientTrace);
      assert.equal(publish.parentSpanId, accept.spanId);
      assert.equal(onward?.split('-')[2], publish.spanId);
      const server = spans.find((s) => s.traceId === clientTrace && s.parentSpanId === clientSpan && s !== accept);
      assert.ok(server, 'the HTTP request has its own span in the client trace');
    } finally {
      await current?.shutdown();
      receiver.close();
    }
  });
});
