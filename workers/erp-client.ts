// Talks to the throttled ERP over HTTP and sorts every answer into what the caller must do next.
import { Agent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
export interface ErpOperation {
  operationId: string;
  kind: 'order' | 'stock-movement';
  payload: Record<string, unknown>;
}

export type ErpResult =
  | { kind: 'recorded'; reference: string; duplicate: boolean }
  | { kind: 'refused'; reason: string }
  | { kind: 'throttled'; retryAfterMs: number }
  | { kind: 'unavailable'; reason: string };

export class ErpClient {
  // Keep-alive sockets: a new TCP connection per call would cost more than the call itself. node:http
  // rather than fetch: at thousands of calls per second fetch's per-call overhead is the bottleneck.
  readonly #agent: Agent;
  readonly #url: URL;

  constructor(
    baseUrl: string,
    private readonly timeoutMs = 5000,
    maxSockets = 64,
  ) {
    this.#url = new URL('/erp/records', baseUrl);
    this.#agent = new (this.#url.protocol === 'https:' ? HttpsAgent : Agent)({ keepAlive: true, maxSockets });
  }

  async record(op: ErpOperation): Promise<ErpResult> {
    let res: { status: number; headers: Headers; body: string };
    try {
      res = await this.#post(JSON.stringify(op));
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
      const res = await this.#send('GET', new URL(`/erp/records/${encodeURIComponent(operationId)}`, this.#url));
      if (res.status === 404) return undefined;
      if (res.status !== 200) return 'unknown';
      return { reference: String((JSON.parse(res.body) as { reference?: string }).reference) };
    } catch {
      return 'unknown';
    }
  }

  close(): void {
    this.#agent.destroy();
  }

  #post(body: string): Promise<{ status: number; headers: Headers; body: string }> {
    return this.#send('POST', this.#url, body);
  }

  #send(method: 'GET' | 'POST', url: URL, body?: string): Promise<{ status: number; headers: Headers; body: string }> {
    return new Promise((resolve, reject) => {
      const requestHeaders = body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
        url,
        { method, agent: this.#agent, headers: requestHeaders, timeout: this.timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const headers = new Headers();
            for (const name of ['retry-after', 'retry-after-ms']) {
              const v = res.headers[name];
              if (typeof v === 'string') headers.set(name, v);
            }
            resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString('utf8') });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
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
