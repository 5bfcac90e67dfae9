// Every ERP call of this process goes through here: paced by the shared Pacer at the operation's
// cost, retried through the same pacer until the ERP gives a final answer. A 429 honours
// Retry-After, cuts the local rate and goes ahead of new work; an unreachable ERP backs off.
// After `maxAttempts` the caller gets `exhausted` and dead-letters the message, unless the ERP says
// it holds the operation after all (or cannot say yet: then we wait until it can).
//
// Giving up says nothing about the ERP: an attempt that timed out, or one made by a process that
// was killed or handed the message back mid-call, may have recorded it. Publishing "failed" for an
// operation the ERP holds would make the order rejected (its stock released) or the movement failed
// while the ERP applied it; the chaos run found exactly that. So the last word is a look-up.
import type { ErpClient, ErpOperation, ErpResult } from './erp-client.js';
import type { Pacer } from '../lib/pacing.js';
import { sleep } from '../lib/shutdown.js';
import { attemptInTrace } from '../lib/tracing.js';
import { hop, type Hop } from '../lib/timeline.js';

export type Final = Exclude<ErpResult, { kind: 'throttled' } | { kind: 'unavailable' }> | { kind: 'exhausted'; reason: string; attempts: number };

/**
 * What a workflow's handler needs: record one operation, with a final answer. Each attempt's wait
 * for pace and call are added to `hops` when given (the order's timeline, lib/timeline.ts).
 */
export type RecordInErp = (op: ErpOperation, hops?: Hop[]) => Promise<Final>;

export interface PacedErpOptions {
  erp: Pick<ErpClient, 'record' | 'find'>;
  pacer: Pacer;
  /** Request units each kind of operation costs at the ERP. */
  costs: Record<ErpOperation['kind'], number>;
  maxAttempts: number;
  /**
   * Attempts of one kind of operation under way at once: waiting for pacing credit or at the ERP
   * (unbounded when left out). The pacer releases credit by the clock, and the ERP meters calls as
   * they arrive: what waits between the two (the HTTP client's queue, the ERP's socket) arrives
   * later in a bunch, into a window that is already full. Bounding it keeps the release time and
   * the arrival time together, however many messages the consumer holds.
   */
  concurrency?: number;
  onResult?: (result: ErpResult['kind'], kind: ErpOperation['kind']) => void;
  onRetry?: (kind: ErpOperation['kind']) => void;
}

export function pacedErp({ erp, pacer, costs, maxAttempts, concurrency = Infinity, onResult, onRetry }: PacedErpOptions): RecordInErp {
  const gates = new Map<string, Gate>();
  const gateOf = (kind: string) => {
    let gate = gates.get(kind);
    if (!gate) gates.set(kind, (gate = new Gate(concurrency)));
    return gate;
  };
  return async (op, hops) => {
    let last = '';
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (attempt > 1) onRetry?.(op.kind);
      const asked = Date.now();
      const gate = gateOf(op.kind);
      await gate.enter(attempt > 1);
      let outcome: { result: ErpResult; sentAt: number };
      try {
        outcome = await attemptInTrace<ErpResult>(op, attempt, (call) => pacer.run(op.kind, costs[op.kind], () => call(() => erp.record(op)), { retry: attempt > 1 }));
      } finally {
        gate.leave();
      }
      const { result, sentAt } = outcome;
      hops?.push(hop('wait for pace', 'worker', asked, sentAt, { attempt }), hop('erp attempt', 'worker', sentAt, Date.now(), attemptFacts(attempt, result)));
      onResult?.(result.kind, op.kind);
      if (result.kind === 'recorded' || result.kind === 'refused') return result;
      if (result.kind === 'throttled') {
        last = 'ERP throttled every attempt (429)';
        pacer.throttled(result.retryAfterMs);
        await sleep(result.retryAfterMs + Math.random() * 20);
      } else {
        last = result.reason;
        await sleep(Math.min(5000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2));
      }
    }
    // Only the ERP's own answer may decide: while it cannot be asked (it is down or restarting),
    // the message stays in hand and we ask again. On SIGTERM the drain hands it back unacknowledged.
    for (let wait = 250; ; wait = Math.min(wait * 2, 5000)) {
      const found = await erp.find(op.operationId);
      if (found === undefined) break;
      if (found !== 'unknown') return { kind: 'recorded', reference: found.reference, duplicate: true };
      await sleep(wait * (0.5 + Math.random() / 2));
    }
    return { kind: 'exhausted', reason: `gave up after ${maxAttempts} attempts: ${last}`, attempts: maxAttempts };
  };
}

/** What the timeline says of one ERP attempt: its number, the ERP's answer (an HTTP status when there was one) and Retry-After. */
export function attemptFacts(attempt: number, result: ErpResult): NonNullable<Hop['detail']> {
  switch (result.kind) {
    case 'recorded':
      return { attempt, result: result.kind, status: result.duplicate ? 200 : 201 };
    case 'refused':
      return { attempt, result: result.kind, status: 422 };
    case 'throttled':
      return { attempt, result: result.kind, status: 429, retryAfterMs: result.retryAfterMs };
    case 'unavailable':
      return { attempt, result: result.kind, error: result.reason.slice(0, 200) };
  }
}

/** At most `limit` holders at once; the others wait in order, a retry ahead of first attempts. */
class Gate {
  #inside = 0;
  readonly #waiting: Array<() => void> = [];
  constructor(private readonly limit: number) {}

  /** Resolves once a place is free; `ahead` (a retry, which waited already) queues before the others. */
  enter(ahead = false): Promise<void> {
    if (this.#inside < this.limit) {
      this.#inside++;
      return Promise.resolve();
    }
    return new Promise((resolve) => (ahead ? this.#waiting.unshift(resolve) : this.#waiting.push(resolve)));
  }

  /** Hands the place to the next waiting holder, if any. */
  leave(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#inside--;
  }
}
