// Talks to the throttled ERP over HTTP and sorts every answer into what the caller must do next.
import { carrierOf } from '../lib/tracing.js';
import { buildConnector, Pool } from 'undici';
import { coalesceWrites } from '../lib/wire.js';
import type { ErpOperationKind } from '../lib/erp-operations.js';

export interface ErpOperation {
  operationId: string;
  kind: ErpOperationKind;
  payload: Record<string, unknown>;
}

export type ErpResult =
  | { kind: 'recorded'; reference: string; duplicate: boolean }
  | { kind: 'refused'; reason: string }
  | { kind: 'throttled'; retryAfterMs: number }
  | { kind: 'unavailable'; reason: string };

/** Keep-alive connections to the ERP by default (the worker's WORKER_ERP_CONNECTIONS), each carrying up to 4 requests. */
export const ERP_CONNECTIONS = 32;

/** An ERP answer's body beyond this is not read: its answers are a few hundred bytes. */
const MAX_ANSWER_BYTES = 64 * 1024;

interface Answer {
  status: number;
  /** The Retry-After headers, when given (lower-case names). */
  retryAfter: RetryAfterHeaders;
  body: string;
}

export class ErpClient {
  // undici rather than node:http or fetch: at thousands of calls per second the client's own cost
  // per call is what limits a worker, and undici's is about half of node:http's (bench figures in
  // docs/benchmarks.md). Its low-level dispatch, not `request`: an answer is collected straight
  // into a string, without the readable stream, async resource and promise `request` makes for
  // each call. Keep-alive connections, each carrying several requests at once (HTTP/1.1
  // pipelining): requests released together by the pacer leave in one write per connection
  // (below). The worker sizes the pool to what its pacer may release at once
  // (WORKER_ERP_CONNECTIONS): a request that queued here would reach the ERP later than its credit
  // was released. Pipelining a POST is safe here because the ERP records an operation once per
  // operation id however often it is sent; a request cut off with its connection is retried by the
  // caller.
  readonly #pool: Pool;
  readonly #path: string;

  constructor(
    baseUrl: string,
    private readonly timeoutMs = 5000,
    { connections = ERP_CONNECTIONS, pipelining = 4 } = {},
  ) {
    const url = new URL('/erp/records', baseUrl);
    this.#path = url.pathname;
    // undici writes each request with its own system call, even the several it pipelines on one
    // connection in one go; through its connect hook, lib/wire.ts sends those in one. Flushed on
    // the next tick, not the next turn: undici writes what a connection has to send in one
    // synchronous loop (for an idle connection, in a setImmediate of its own), and a turn more would
    // only delay the requests. The connector keeps undici's defaults (a 10 s connect timeout,
    // TCP keep-alive); with `connect` a function, Pool's own connect options (connectTimeout, tls,
    // socketPath…) are ignored: they belong in buildConnector's options here.
    const connector = buildConnector({});
    const connect: buildConnector.connector = (options, callback) =>
      connector(options, (...result) => {
        if (result[1]) coalesceWrites(result[1], process.nextTick);
        callback(...result);
      });
    this.#pool = new Pool(url.origin, { connections, pipelining, connect, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, keepAliveTimeout: 30_000 });
  }

  /** Connections to the ERP open now (for the worker's metrics). */
  get connections(): number {
    return this.#pool.stats.connected;
  }

  async record(op: ErpOperation): Promise<ErpResult> {
    let res: Answer;
    try {
      res = await this.#send('POST', this.#path, JSON.stringify(op));
    } catch (err) {
      return { kind: 'unavailable', reason: `ERP unreachable: ${(err as Error).message}` };
    }
    let body: { reference?: string; duplicate?: boolean; detail?: string; title?: string } = {};
    try {
      body = JSON.parse(res.body) as typeof body;
    } catch {
      // not JSON: judged by the status alone
    }
    if (res.status === 200 || res.status === 201) {
      return { kind: 'recorded', reference: String(body.reference), duplicate: body.duplicate === true };
    }
    if (res.status === 429) return { kind: 'throttled', retryAfterMs: retryAfterMs(res.retryAfter) };
    if (res.status >= 400 && res.status < 500) {
      return { kind: 'refused', reason: `ERP refused (${res.status}): ${body.detail ?? body.title ?? 'no detail'}` };
    }
    return { kind: 'unavailable', reason: `ERP answered ${res.status}` };
  }

  /**
   * Whether the ERP holds the operation already: its reference, `undefined` if it does not, or
   * 'unknown' when the ERP cannot say (unreachable, error). Reads are not metered by the ERP.
   */
  async find(operationId: string): Promise<{ reference: string } | undefined | 'unknown'> {
    try {
      const res = await this.#send('GET', `${this.#path}/${encodeURIComponent(operationId)}`);
      if (res.status === 404) return undefined;
      if (res.status !== 200) return 'unknown';
      return { reference: String((JSON.parse(res.body) as { reference?: string }).reference) };
    } catch {
      return 'unknown';
    }
  }

  close(): Promise<void> {
    return this.#pool.close();
  }

  #send(method: 'GET' | 'POST', path: string, body?: string): Promise<Answer> {
    // The caller's trace continues at the ERP (W3C traceparent; lib/tracing.ts).
    const headers: string[] = [];
    for (const [name, value] of Object.entries(carrierOf())) if (value !== undefined) headers.push(name, value);
    if (body !== undefined) headers.push('content-type', 'application/json');
    return new Promise<Answer>((resolve, reject) => {
      let status = 0;
      let retryAfter: RetryAfterHeaders = {};
      let chunks: Buffer[] = [];
      let size = 0;
      let abort: ((err?: Error) => void) | undefined;
      this.#pool.dispatch(
        { method, path, idempotent: true, headers, ...(body === undefined ? {} : { body }) },
        {
          // Called again when a pipelined request is sent again: what an earlier try read is dropped.
          onConnect(abortRequest) {
            abort = abortRequest;
            status = 0;
            retryAfter = {};
            chunks = [];
            size = 0;
          },
          onHeaders(statusCode, raw) {
            status = statusCode;
            retryAfter = retryAfterOf(raw);
            return true;
          },
          onData(chunk) {
            size += chunk.length;
            if (size > MAX_ANSWER_BYTES) abort?.(new Error(`ERP answer over ${MAX_ANSWER_BYTES} bytes`));
            else chunks.push(chunk);
            return true;
          },
          onComplete() {
            resolve({ status, retryAfter, body: chunks.length === 1 ? chunks[0]!.toString() : Buffer.concat(chunks).toString() });
          },
          onError: reject,
        },
      );
    });
  }
}

/** The two Retry-After headers of an answer, when present. */
export interface RetryAfterHeaders {
  'retry-after'?: string;
  'retry-after-ms'?: string;
}

/** Picks the Retry-After headers out of undici's raw header list (name, value, name, value …). */
function retryAfterOf(raw: Buffer[]): RetryAfterHeaders {
  const found: RetryAfterHeaders = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    // Only names of the right length are decoded: most answers carry neither header.
    if (name.length !== 11 && name.length !== 14) continue;
    const lower = name.toString('latin1').toLowerCase();
    if (lower === 'retry-after' || lower === 'retry-after-ms') found[lower] = raw[i + 1]!.toString('latin1');
  }
  return found;
}

/** Retry-After in ms: the precise `retry-after-ms` when given, else the standard header (seconds or date). */
export function retryAfterMs(headers: RetryAfterHeaders, fallbackMs = 1000): number {
  const ms = Number(headers['retry-after-ms']);
  if (Number.isFinite(ms) && ms > 0) return Math.min(ms, 60_000);
  const value = headers['retry-after'];
  if (value === undefined) return fallbackMs;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds * 1000, 60_000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? fallbackMs : Math.min(Math.max(0, date - Date.now()), 60_000);
}
