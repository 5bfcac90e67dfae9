// The ERP sandbox's HTTP API: a stand-in for the throttled back-office system. It charges request
// units per operation against a provisioned capacity, answers 429 with Retry-After beyond it,
// deduplicates by operation id and counts everything so tests and benchmarks can check the pacing.
import { createRoute, z } from '@hono/zod-openapi';
import { Counter, Gauge } from 'prom-client';
import { ERP_OPERATION_KINDS, type ErpOperationKind } from '../../lib/erp-operations.js';
import { createApp, limitBody, problem } from '../../lib/http.js';
import type { Logger } from '../../lib/log.js';
import type { Metrics } from '../../lib/metrics.js';
import { sleep } from '../../lib/shutdown.js';
import type { ErpStore } from './store.js';
import type { Throttle } from './throttle.js';

export interface ErpOptions {
  store: ErpStore;
  throttle: Throttle;
  /** Request units each kind of operation costs. */
  costs: Record<ErpOperationKind, number>;
  /** Orders from these e-mail domains are refused (a stand-in for a failed credit check). */
  blockedDomains: string[];
  /** Orders from these e-mail domains get a 503 every time (a stand-in for a back-office outage that outlasts a worker's attempts). */
  unavailableDomains?: string[];
  /** Orders from these e-mail domains get a 429 on their first attempt, then are taken as usual (a forced throttle, for tests). */
  throttledDomains?: string[];
  /** Fault injection for resilience tests: extra latency, a share of random 500s and of random 429s. */
  latencyMs?: number;
  errorRate?: number;
  throttleRate?: number;
  log: Logger;
  metrics: Metrics;
  /** Larger bodies get a 413 problem; an order record is a few KiB at most. */
  maxBodyBytes?: number;
}

/** How deep a record's payload may nest: an order is four levels; serialising thousands of levels overflows the stack. */
export const MAX_PAYLOAD_DEPTH = 32;

const operationIdSchema = z.string().regex(/^[A-Za-z0-9:._-]{1,128}$/);

const recordBody = z.strictObject({
  operationId: operationIdSchema,
  kind: z.enum(ERP_OPERATION_KINDS),
  payload: z.record(z.string(), z.unknown()).refine((p) => depthOf(p, MAX_PAYLOAD_DEPTH) <= MAX_PAYLOAD_DEPTH, `nests deeper than ${MAX_PAYLOAD_DEPTH} levels`),
});

const recordRoute = createRoute({
  method: 'post',
  path: '/erp/records',
  request: { body: { content: { 'application/json': { schema: recordBody } }, required: true } },
  responses: {
    201: { description: 'recorded' },
    200: { description: 'already recorded (duplicate operation id)' },
    400: { description: 'invalid body: operation id, kind, or a payload that is not an object or nests too deep' },
    413: { description: 'body over the limit (64 KiB)' },
    422: { description: 'refused by business rules' },
    429: { description: 'over provisioned capacity; see Retry-After' },
  },
});

const getRecordRoute = createRoute({
  method: 'get',
  path: '/erp/records/{operationId}',
  request: { params: z.object({ operationId: operationIdSchema.openapi({ param: { name: 'operationId', in: 'path' } }) }) },
  responses: {
    200: { description: 'the record' },
    400: { description: 'not an operation id: 1–128 characters of A–Z, a–z, 0–9 and :._-' },
    404: { description: 'no such operation' },
  },
});

export function createErp({ store, throttle, costs, blockedDomains, unavailableDomains = [], throttledDomains = [], latencyMs = 0, errorRate = 0, throttleRate = 0, log, metrics, maxBodyBytes = 64 * 1024 }: ErpOptions) {
  const counters = { calls: 0, accepted: 0, rejected: 0, duplicates: 0, refused: 0, errors: 0 };
  const calls = new Counter({
    name: 'erp_calls_total',
    help: 'ERP calls by outcome (accepted, duplicate, throttled, refused, error)',
    labelNames: ['outcome', 'kind'] as const,
    registers: [metrics.registry],
  });
  new Gauge({
    name: 'erp_capacity_units_per_second',
    help: 'Provisioned ERP capacity in request units per second',
    registers: [metrics.registry],
    collect() {
      this.set(throttle.capacity);
    },
  });
  const count = (outcome: string, kind: string) => calls.inc({ outcome, kind });
  const throttledOnce = new FirstTimes(10_000);

  const app = createApp({ log, metrics, ready: () => ({ database: store.db.open }) });
  app.use('/erp/*', limitBody(maxBodyBytes));

  app.openapi(recordRoute, async (c) => {
    const { operationId, kind, payload } = c.req.valid('json');
    counters.calls++;
    if (latencyMs > 0) await sleep(latencyMs);
    if (kind === 'order' && fromDomain(payload, unavailableDomains)) {
      counters.errors++;
      count('error', kind);
      return problem(503, 'ERP unavailable', 'injected fault (ERP_UNAVAILABLE_DOMAINS)');
    }
    if (kind === 'order' && fromDomain(payload, throttledDomains) && throttledOnce.add(operationId)) {
      counters.rejected++;
      count('throttled', kind);
      return problem(429, 'Too Many Requests', 'injected fault (ERP_THROTTLED_DOMAINS): first attempt', {}, { 'retry-after': '1', 'retry-after-ms': '200' });
    }
    if (errorRate > 0 && Math.random() < errorRate) {
      counters.errors++;
      count('error', kind);
      return problem(500, 'ERP internal error', 'injected fault (ERP_ERROR_RATE)');
    }
    if (throttleRate > 0 && Math.random() < throttleRate) {
      // As if the ERP's own capacity had shrunk for a moment: nothing charged, nothing recorded.
      const retryAfter = 100 + Math.floor(Math.random() * 400);
      counters.rejected++;
      count('throttled', kind);
      return problem(429, 'Too Many Requests', 'injected fault (ERP_THROTTLE_RATE)', {}, { 'retry-after': '1', 'retry-after-ms': String(retryAfter) });
    }
    const charge = throttle.take(costs[kind]);
    if (!charge.ok) {
      counters.rejected++;
      count('throttled', kind);
      return problem(429, 'Too Many Requests', `capacity of ${throttle.capacity} RU/s exceeded`, {}, {
        'retry-after': String(Math.ceil(charge.retryAfterMs / 1000)),
        'retry-after-ms': String(charge.retryAfterMs),
      });
    }
    if (kind === 'order' && fromDomain(payload, blockedDomains)) {
      counters.refused++;
      count('refused', kind);
      return problem(422, 'Refused by ERP', 'customer failed the credit check');
    }
    const { record, duplicate } = store.record(operationId, kind, payload);
    if (duplicate) {
      counters.duplicates++;
      count('duplicate', kind);
      return c.json({ reference: record.reference, duplicate: true }, 200);
    }
    counters.accepted++;
    count('accepted', kind);
    return c.json({ reference: record.reference, duplicate: false }, 201);
  });

  app.openapi(getRecordRoute, (c) => {
    const record = store.get(c.req.valid('param').operationId);
    return record ? c.json(record) : problem(404, 'Not Found', 'no such operation');
  });

  /** Everything the ERP counted; `seconds` are its one-second windows, oldest first. */
  const snapshot = (seconds = 120) => ({
    capacity: throttle.capacity,
    costs,
    ...counters,
    records: store.countByKind(),
    seconds: throttle.seconds().slice(-seconds),
  });
  app.get('/erp/stats', (c) => c.json(snapshot()));

  return { app, snapshot };
}

/** How deep `value` nests (a scalar is 0, `{}` and `[]` are 1), counted without recursion and no further than `limit` + 1. */
export function depthOf(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    const here = depth + 1;
    if (here > deepest) deepest = here;
    if (deepest > limit) return deepest;
    for (const child of Object.values(v)) stack.push([child, here]);
  }
  return deepest;
}

function fromDomain(payload: Record<string, unknown>, domains: string[]): boolean {
  const customer = payload.customer as { email?: unknown } | undefined;
  const email = typeof customer?.email === 'string' ? customer.email.toLowerCase() : '';
  return domains.some((d) => email.endsWith(`@${d}`));
}

/** Remembers the last `size` keys seen, to tell a first time from the next ones. */
class FirstTimes {
  readonly #seen = new Set<string>();
  constructor(private readonly size: number) {}
  /** True the first time `key` is seen (within the last `size` keys). */
  add(key: string): boolean {
    if (this.#seen.has(key)) return false;
    this.#seen.add(key);
    if (this.#seen.size > this.size) this.#seen.delete(this.#seen.values().next().value!);
    return true;
  }
}
