// Reads the body of a bulk import, a JSON array or NDJSON (one movement per line), within a byte and
// a count limit, and validates each movement. NDJSON is parsed as it streams in; a JSON array is
// buffered (bounded by maxBytes) and parsed once. Errors name the line (NDJSON) or the 1-based
// position in the array, so the client can fix its file; any error means nothing is stored.
import { z } from '@hono/zod-openapi';
import { productId } from '../../lib/topics.js';

export const MovementSchema = z
  .strictObject({
    productId,
    /** Units received (positive) or removed (negative). */
    delta: z
      .number()
      .int()
      .min(-1_000_000)
      .max(1_000_000)
      .refine((n) => n !== 0, 'must not be 0')
      .openapi({ not: { const: 0 } }),
    /** Optional, unique system-wide; by default the import derives `<importId>:<line>`. */
    movementId: z.string().regex(/^[A-Za-z0-9._-][A-Za-z0-9:._-]{0,63}$/, 'letters, digits and :._- (at most 64)').optional(),
  })
  .openapi('StockMovement', { example: { productId: 'wooden-train', delta: 12 } });
export type Movement = z.infer<typeof MovementSchema>;

export interface LineError {
  line: number;
  message: string;
}

export type ParseResult =
  | { ok: true; movements: Movement[]; /** The source line (or array position) of each movement. */ lines: number[] }
  | { ok: false; status: 400 | 413 | 415; title: string; detail: string; errors?: LineError[] };

export interface ParseLimits {
  maxBytes: number;
  maxMovements: number;
  /** At most this many line errors are listed (all are counted). */
  maxListedErrors?: number;
}

export const NDJSON_TYPES = ['application/x-ndjson', 'application/ndjson', 'application/jsonl'];

export function bodyKind(contentType: string | undefined): 'json' | 'ndjson' | undefined {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/json') return 'json';
  if (NDJSON_TYPES.includes(type)) return 'ndjson';
  return undefined;
}

export async function parseMovements(contentType: string | undefined, body: ReadableStream<Uint8Array> | null, limits: ParseLimits): Promise<ParseResult> {
  const kind = bodyKind(contentType);
  if (!kind) {
    return { ok: false, status: 415, title: 'Unsupported Media Type', detail: `send application/json (an array) or ${NDJSON_TYPES[0]} (one movement per line)` };
  }
  return kind === 'json' ? parseJsonArray(body, limits) : parseNdjson(body, limits);
}

class Collector {
  readonly movements: Movement[] = [];
  readonly lines: number[] = [];
  readonly errors: LineError[] = [];
  count = 0;
  constructor(private readonly limits: ParseLimits) {}

  add(line: number, value: unknown): void {
    const result = MovementSchema.safeParse(value);
    if (result.success) {
      this.movements.push(result.data);
      this.lines.push(line);
    }
    else this.fail(line, result.error.issues.map((i) => `${i.path.join('.') || '(line)'}: ${i.message}`).join('; '));
  }

  fail(line: number, message: string): void {
    this.count++;
    if (this.errors.length < (this.limits.maxListedErrors ?? 100)) this.errors.push({ line, message });
  }

  result(total: number, unit: string): ParseResult {
    if (total > this.limits.maxMovements) {
      return { ok: false, status: 413, title: 'Payload Too Large', detail: `at most ${this.limits.maxMovements} movements per import (got ${total})` };
    }
    if (this.count > 0) {
      const listed = this.errors.map((e) => e.line).join(', ');
      const more = this.count > this.errors.length ? ` (first ${this.errors.length} of ${this.count} listed)` : '';
      return { ok: false, status: 400, title: 'Invalid movements', detail: `invalid ${unit}${this.count > 1 ? 's' : ''}: ${listed}${more}; nothing was stored`, errors: this.errors };
    }
    if (this.movements.length === 0) return { ok: false, status: 400, title: 'Invalid movements', detail: 'the import holds no movements' };
    return { ok: true, movements: this.movements, lines: this.lines };
  }
}

const tooLarge = (maxBytes: number): ParseResult => ({ ok: false, status: 413, title: 'Payload Too Large', detail: `request body exceeds ${maxBytes} bytes` });

async function* chunks(body: ReadableStream<Uint8Array> | null): AsyncGenerator<Uint8Array> {
  if (!body) return;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    // Bailing out early leaves the rest unread, not cancelled: cancelling would destroy the socket
    // before the answer goes out. The server reads and discards the rest after answering
    // (lib/http.ts lingerAfterEarlyResponse).
    reader.releaseLock();
  }
}

async function parseNdjson(body: ReadableStream<Uint8Array> | null, limits: ParseLimits): Promise<ParseResult> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const out = new Collector(limits);
  let bytes = 0;
  let pending = '';
  let line = 0;
  let nonEmpty = 0;
  const take = (text: string) => {
    line++;
    const trimmed = text.trim();
    if (trimmed === '') return;
    nonEmpty++;
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch {
      return out.fail(line, 'not valid JSON');
    }
    out.add(line, value);
  };
  try {
    for await (const chunk of chunks(body)) {
      bytes += chunk.length;
      if (bytes > limits.maxBytes) return tooLarge(limits.maxBytes);
      pending += decoder.decode(chunk, { stream: true });
      let start = 0;
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n', start)) {
        take(pending.slice(start, nl));
        start = nl + 1;
      }
      pending = pending.slice(start);
      if (nonEmpty > limits.maxMovements) return out.result(nonEmpty, 'line');
    }
    pending += decoder.decode();
  } catch {
    return { ok: false, status: 400, title: 'Invalid movements', detail: `line ${line + 1} is not valid UTF-8; nothing was stored` };
  }
  if (pending.trim() !== '') take(pending);
  return out.result(nonEmpty, 'line');
}

async function parseJsonArray(body: ReadableStream<Uint8Array> | null, limits: ParseLimits): Promise<ParseResult> {
  const parts: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of chunks(body)) {
    bytes += chunk.length;
    if (bytes > limits.maxBytes) return tooLarge(limits.maxBytes);
    parts.push(chunk);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(parts).toString('utf8'));
  } catch (err) {
    return { ok: false, status: 400, title: 'Invalid movements', detail: `the body is not valid JSON: ${(err as Error).message}` };
  }
  if (!Array.isArray(value)) {
    return { ok: false, status: 400, title: 'Invalid movements', detail: `send an array of movements (or ${NDJSON_TYPES[0]}, one per line)` };
  }
  const out = new Collector(limits);
  if (value.length > limits.maxMovements) return out.result(value.length, 'item');
  value.forEach((item, i) => out.add(i + 1, item));
  return out.result(value.length, 'item');
}
