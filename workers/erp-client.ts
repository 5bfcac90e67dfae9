// Talks to the throttled ERP over HTTP and sorts every answer into what the caller must do next.
import { carrierOf } from '../lib/tracing.js';
import { Pool } from 'undici';
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

export class ErpClient {
  // undici rather than node:http or fetch: at thousands of calls per second the client's own cost
  // per call is what limits a worker, and undici's is about half of node:http's (bench figures in
  // docs/benchmarks.md). Keep-alive connections, each carrying several requests at once (HTTP/1.1
  // pipelining): requests released together by the pacer leave in fewer writes. The worker sizes the
  // pool to what its pacer may release at once (WORKER_ERP_CONNECTIONS): a request that queued here
  // would reach the ERP later than its credit was released. Pipelining
  // a POST is safe here because the ERP records an operation once per operation id however often it
  // is sent; a request cut off with its connection is retried by the caller.
  readonly #pool: Pool;
  readonly #path: string;

  constructor(
    baseUrl: string,
    private readonly timeoutMs = 5000,
    { connections = 32, pipelining = 4 } = {},
  ) {
    const url = new URL('/erp/records', baseUrl);
    this.#path = url.pathname;
    this.#pool = new Pool(url.origin, { connections, pipelining, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, keepAliveTimeout: 30_000 });
  }

  async record(op: ErpOperation): Promise<ErpResult> {
    let res: { status: number; headers: Headers; body: string };
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
    if (res.status === 429) return { kind: 'throttled', retryAfterMs: retryAfterMs(res.headers) };
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

  async #send(method: 'GET' | 'POST', path: string, body?: string): Promise<{ status: number; headers: Headers; body: string }> {
    const res = await this.#pool.request({
      method,
      path,
      idempotent: true,
      // The caller's trace continues at the ERP (W3C traceparent; lib/tracing.ts).
      headers: { ...carrierOf(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body }),
    });
    const text = await res.body.text();
    const headers = new Headers();
    for (const name of ['retry-after', 'retry-after-ms']) {
      const v = res.headers[name];
      if (typeof v === 'string') headers.set(name, v);
    }
    return { status: res.statusCode, headers, body: text };
  }
}

/** Retry-After in ms: the precise `retry-after-ms` when given, else the standard header (seconds or date). */
export function retryAfterMs(headers: Headers, fallbackMs = 1000): number {
  const ms = Number(headers.get('retry-after-ms'));
  if (Number.isFinite(ms) && ms > 0) return Math.min(ms, 60_000);
  const value = headers.get('retry-after');
  if (value === null) return fallbackMs;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.min(seconds * 1000, 60_000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? fallbackMs : Math.min(Math.max(0, date - Date.now()), 60_000);
}
