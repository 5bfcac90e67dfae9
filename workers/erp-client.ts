// Talks to the throttled ERP over HTTP and sorts every answer into what the caller must do next.
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
  constructor(
    private readonly baseUrl: string,
    private readonly timeoutMs = 5000,
  ) {}

  async record(op: ErpOperation): Promise<ErpResult> {
    let res: Response;
    try {
      res = await fetch(new URL('/erp/records', this.baseUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(op),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      return { kind: 'unavailable', reason: `ERP unreachable: ${(err as Error).message}` };
    }
    const body = (await res.json().catch(() => ({}))) as { reference?: string; duplicate?: boolean; detail?: string; title?: string };
    if (res.status === 200 || res.status === 201) {
      return { kind: 'recorded', reference: String(body.reference), duplicate: body.duplicate === true };
    }
    if (res.status === 429) return { kind: 'throttled', retryAfterMs: retryAfterMs(res.headers) };
    if (res.status >= 400 && res.status < 500) {
      return { kind: 'refused', reason: `ERP refused (${res.status}): ${body.detail ?? body.title ?? 'no detail'}` };
    }
    return { kind: 'unavailable', reason: `ERP answered ${res.status}` };
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
