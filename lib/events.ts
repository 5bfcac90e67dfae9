// The CloudEvents 1.0 JSON envelope every message on the broker uses, and what an event is: its
// definition (topic, type, data schema; the catalogue of them is lib/topics.ts), creating one, and
// decoding a payload against it (consumers do so through lib/mqtt.ts eventRoute).
import { createHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { carrierOf } from './tracing.js';

export const TOPIC_ROOT = 'woodytoys';

/** Largest MQTT payload a consumer will parse; anything bigger goes to the dead letters unread. */
export const MAX_EVENT_BYTES = 256 * 1024;

/** The CloudEvents 1.0 structured-mode JSON envelope, with the distributed-tracing extension; other extension attributes may ride beside these. */
export const envelopeSchema = z.object({
  specversion: z.literal('1.0'),
  id: z.uuid(),
  source: z.string().min(1).max(256),
  type: z.string().regex(/^woodytoys\.[a-z.-]+$/),
  time: z.iso.datetime({ offset: true }),
  subject: z.string().max(256).optional(),
  datacontenttype: z.literal('application/json').optional(),
  data: z.unknown(),
  // The CloudEvents distributed-tracing extension: the W3C trace context of the operation that
  // caused the event (lib/tracing.ts). A malformed value is dropped, never a reason to refuse the event.
  traceparent: z.string().regex(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/).optional().catch(undefined),
  tracestate: z.string().max(512).optional().catch(undefined),
});

export type CloudEvent<T = unknown> = Omit<z.infer<typeof envelopeSchema>, 'data'> & { data: T };

export interface EventDefinition<T extends z.ZodType = z.ZodType> {
  /** The MQTT topic it is published on, or the filter that matches all of its topics. */
  readonly topic: string;
  readonly type: string;
  readonly data: T;
  /** Retained events give a late subscriber the current state at once (e.g. stock levels). */
  readonly retain?: boolean;
  /** What it means, in a sentence or two: the AsyncAPI document (lib/asyncapi.ts) shows it. */
  readonly summary: string;
  /** The name and meaning of each `+` level of `topic`, in order. */
  readonly parameters?: Readonly<Record<string, string>>;
  /** Sample data for the AsyncAPI document, checked against `data` when the document is built. */
  readonly example: z.input<T>;
}

export const defineEvent = <T extends z.ZodType>(def: EventDefinition<T>) => def;

export type EventData<D> = D extends EventDefinition<infer T> ? z.infer<T> : never;

export interface CreateOptions {
  source: string;
  /** A fixed id makes re-publishing idempotent (e.g. an outcome derived from its input event). */
  id?: string;
  subject?: string;
  time?: Date;
}

export function createEvent<T extends z.ZodType>(
  def: EventDefinition<T>,
  data: z.infer<T>,
  { source, id = randomUUID(), subject, time = new Date() }: CreateOptions,
): CloudEvent<z.infer<T>> {
  return {
    specversion: '1.0',
    id,
    source,
    type: def.type,
    time: time.toISOString(),
    ...(subject === undefined ? {} : { subject }),
    datacontenttype: 'application/json',
    data: def.data.parse(data) as z.infer<T>,
    ...carrierOf(),
  };
}

export type Decoded<T> = { ok: true; event: CloudEvent<T> } | { ok: false; reason: string };

/** Parses and validates a payload against the envelope and the event's data schema; never throws. */
export function decodeEvent<T extends z.ZodType>(def: EventDefinition<T>, payload: Buffer | string): Decoded<z.infer<T>> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (size > MAX_EVENT_BYTES) return { ok: false, reason: `payload of ${size} bytes exceeds ${MAX_EVENT_BYTES}` };
  let json: unknown;
  try {
    json = JSON.parse(payload.toString());
  } catch {
    return { ok: false, reason: 'payload is not valid JSON' };
  }
  const envelope = envelopeSchema.safeParse(json);
  if (!envelope.success) return { ok: false, reason: `not a CloudEvent: ${summarize(envelope.error)}` };
  if (envelope.data.type !== def.type) {
    return { ok: false, reason: `expected event type ${def.type}, got ${envelope.data.type}` };
  }
  const data = def.data.safeParse(envelope.data.data);
  if (!data.success) return { ok: false, reason: `invalid ${def.type} data: ${summarize(data.error)}` };
  return { ok: true, event: { ...envelope.data, data: data.data as z.infer<T> } };
}

function summarize(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.join('.') || '(root)'} ${i.message}`)
    .join('; ');
}

/** A name-based (v5-style) UUID: the same parts always give the same id. */
export function deriveId(...parts: string[]): string {
  const hash = createHash('sha1').update(parts.join('\u0000')).digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** Does an MQTT topic filter (with + and #) match a topic name? */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}
