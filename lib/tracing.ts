// Trace context for one process (issue 17's groundwork): the OpenTelemetry SDK, set up once at
// start. Trace ids always flow (W3C traceparent in, out, and into every log line); spans are
// recorded and exported over OTLP/HTTP only when the standard OpenTelemetry variables ask for it
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, and OTEL_SDK_DISABLED not true).
//
// Without an exporter the sampler is AlwaysOff: the SDK still makes a trace id for a request that
// brings none and hands its context on, but records nothing, so the cost is an id and a context
// switch per hop (bench:pipeline measures it).
import { createRequire } from 'node:module';
import { context, propagation, SpanKind, SpanStatusCode, trace, type Context, type Span, type SpanOptions, type Tracer } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOffSampler, AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

export interface Tracing {
  tracer: Tracer;
  /** True when spans are recorded and exported. */
  exporting: boolean;
  /** Sends what is buffered and stops (part of graceful shutdown). */
  shutdown(): Promise<void>;
}

/** Whether the environment asks for spans to be exported (the OpenTelemetry specification's variables). */
export function exportRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  if ((env.OTEL_SDK_DISABLED ?? '').toLowerCase() === 'true') return false;
  if ((env.OTEL_TRACES_EXPORTER ?? 'otlp').toLowerCase() === 'none') return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT);
}

/** Where spans go: the traces endpoint as given, or the base endpoint's /v1/traces (as the specification says). */
export function tracesEndpoint(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (env.OTEL_EXPORTER_OTLP_ENDPOINT) return `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces`;
  return undefined;
}

let current: Tracing | undefined;

/**
 * The OTLP/HTTP exporter, loaded only when spans are exported: it and its protobuf code cost every
 * process about 0.2 s of CPU at start, spent for nothing when no collector is configured.
 */
function otlpExporter(url: string | undefined) {
  const { OTLPTraceExporter } = createRequire(import.meta.url)('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http');
  return new OTLPTraceExporter({ url });
}

/** Sets up tracing for this process, once; later calls return the same. */
export function startTracing(service: string, env: NodeJS.ProcessEnv = process.env): Tracing {
  if (current) return current;
  // The SDK switched off altogether: the API's no-op tracer, no ids made or passed on (the
  // baseline bench:pipeline compares tracing with).
  if ((env.OTEL_SDK_DISABLED ?? '').toLowerCase() === 'true') {
    current = { tracer: trace.getTracer('woodytoys'), exporting: false, shutdown: async () => {} };
    return current;
  }
  const exporting = exportRequested(env);
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': env.OTEL_SERVICE_NAME || `woodytoys-${service}` }),
    sampler: exporting ? new ParentBasedSampler({ root: new AlwaysOnSampler() }) : new AlwaysOffSampler(),
    spanProcessors: exporting ? [new BatchSpanProcessor(otlpExporter(tracesEndpoint(env)))] : [],
  });
  provider.register({ propagator: new W3CTraceContextPropagator() });
  current = { tracer: trace.getTracer('woodytoys'), exporting, shutdown: () => provider.shutdown() };
  return current;
}

/** The trace and span ids of the active span, for log lines (lib/log.ts's mixin); empty outside one. */
export function traceFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan()?.spanContext();
  if (!span || !trace.isSpanContextValid(span)) return {};
  return { trace_id: span.traceId, span_id: span.spanId };
}

/** The context a W3C `traceparent` (an HTTP header, a CloudEvent's extension) continues; the root context when absent or malformed. */
export function contextFrom(traceparent: string | undefined, tracestate?: string): Context {
  if (!traceparent) return context.active();
  return propagation.extract(context.active(), { traceparent, ...(tracestate ? { tracestate } : {}) });
}

/** The `traceparent` (and `tracestate`) that carry the active context onward. */
export function carrierOf(ctx: Context = context.active()): { traceparent?: string; tracestate?: string } {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

/** Runs `work` inside a new span (a child of `parent`), ends it, and records an exception as the span's error. */
export async function inSpan<T>(tracer: Tracer, name: string, options: SpanOptions & { parent?: Context }, work: (span: Span) => Promise<T>): Promise<T> {
  const parent = options.parent ?? context.active();
  return tracer.startActiveSpan(name, options, parent, async (span) => {
    try {
      return await work(span);
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      span.end();
    }
  });
}

const tracer = () => trace.getTracer('woodytoys');

/** A stored event's traceparent, found without parsing the whole JSON (lib/events.ts writes it as a plain string). */
const STORED_TRACEPARENT = /"traceparent":"(00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})"/;

/**
 * A span for publishing a stored event (the outbox relay), in the event's trace: from the moment it
 * was stored to the broker's acknowledgement. Undefined, at the cost of one check, when spans are
 * not recorded (no exporter) or the event carries no trace.
 */
export function publishSpan(payload: string, topic: string, storedAt: number): Span | undefined {
  if (!current?.exporting) return undefined;
  const traceparent = STORED_TRACEPARENT.exec(payload)?.[1];
  if (!traceparent) return undefined;
  return tracer().startSpan('outbox publish', { kind: SpanKind.PRODUCER, startTime: storedAt, attributes: { 'messaging.destination.name': topic } }, contextFrom(traceparent));
}

/** What a consumer needs of an event to continue its trace. */
interface Traced {
  id: string;
  type: string;
  time: string;
  traceparent?: string | undefined;
  tracestate?: string | undefined;
}

/**
 * Runs a consumer's effect for one event inside the event's trace: a span for the time it waited
 * between being made and being handled (the outbox, the broker's group queue, the consumer's
 * window), then the consuming span itself, whose context the effect's logs, events and calls carry.
 */
export function consumeInTrace<R>(event: Traced, topic: string, effect: () => R): R {
  const parent = contextFrom(event.traceparent, event.tracestate);
  const attributes = { 'messaging.destination.name': topic, 'cloudevents.event_id': event.id, 'cloudevents.event_type': event.type };
  // Spans that pass no context on are made only when recorded: unrecorded, they would cost ids and
  // an object per message for nothing.
  if (current?.exporting) {
    const made = Date.parse(event.time);
    if (Number.isFinite(made) && made <= Date.now()) tracer().startSpan('wait in queue', { startTime: made, attributes }, parent).end();
  }
  const span = tracer().startSpan(`consume ${event.type}`, { kind: SpanKind.CONSUMER, attributes }, parent);
  const fail = (err: unknown) => {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  };
  let result: R;
  try {
    result = context.with(trace.setSpan(parent, span), effect);
  } catch (err) {
    fail(err);
    span.end();
    throw err;
  }
  if (result instanceof Promise) {
    return result.then(
      (value) => (span.end(), value),
      (err: unknown) => {
        fail(err);
        span.end();
        throw err;
      },
    ) as R;
  }
  span.end();
  return result;
}

/** What an ERP attempt's span needs of the operation. */
interface Attempted {
  kind: string;
  operationId: string;
}

/**
 * One ERP attempt in the current trace: a span for the time it waited for pacing credit (lease and
 * pacer), then the attempt's own span with its outcome (recorded, refused, throttled with its
 * Retry-After, unavailable). `run` gets `call`, to wrap the ERP call once the credit is granted:
 * the call then runs in the attempt's span, so its request carries that traceparent. Resolves with
 * the result and the moment the call began (the end of the wait), for the order's timeline.
 */
export async function attemptInTrace<R extends { kind: string; retryAfterMs?: number }>(
  op: Attempted,
  attempt: number,
  run: (call: (send: () => Promise<R>) => Promise<R>) => Promise<R>,
): Promise<{ result: R; sentAt: number }> {
  const parent = context.active();
  const attributes = { 'erp.operation.kind': op.kind, 'erp.operation.id': op.operationId, 'erp.attempt': attempt };
  const waiting = current?.exporting ? tracer().startSpan('wait for pace', { attributes }, parent) : undefined;
  let calling: Span | undefined;
  let sentAt = Date.now();
  try {
    const result = await run((send) => {
      sentAt = Date.now();
      waiting?.end(sentAt);
      calling = tracer().startSpan('erp attempt', { kind: SpanKind.CLIENT, attributes, startTime: sentAt }, parent);
      return context.with(trace.setSpan(parent, calling), send);
    });
    calling?.setAttribute('erp.result', result.kind);
    if (result.retryAfterMs !== undefined) calling?.setAttribute('erp.retry_after_ms', result.retryAfterMs);
    return { result, sentAt };
  } catch (err) {
    calling?.recordException(err as Error);
    calling?.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    waiting?.end(); // a no-op when the call began
    calling?.end();
  }
}
