// Every ERP call of this process goes through here: paced by the shared Pacer at the operation's
// cost, retried through the same pacer until the ERP gives a final answer. A 429 honours
// Retry-After, cuts the local rate and goes ahead of new work; an unreachable ERP backs off.
// After `maxAttempts` the caller gets `exhausted` and dead-letters the message.
import type { Pacer } from '../lib/pacing.js';
import { sleep } from '../lib/shutdown.js';
import type { ErpClient, ErpOperation, ErpResult } from './erp-client.js';

export type Final = Exclude<ErpResult, { kind: 'throttled' } | { kind: 'unavailable' }> | { kind: 'exhausted'; reason: string; attempts: number };

/** What a workflow's handler needs: record one operation, with a final answer. */
export type RecordInErp = (op: ErpOperation) => Promise<Final>;

export interface PacedErpOptions {
  erp: ErpClient;
  pacer: Pacer;
  /** Request units each kind of operation costs at the ERP. */
  costs: Record<ErpOperation['kind'], number>;
  maxAttempts: number;
  onResult?: (result: ErpResult['kind'], kind: ErpOperation['kind']) => void;
  onRetry?: (kind: ErpOperation['kind']) => void;
}

export function pacedErp({ erp, pacer, costs, maxAttempts, onResult, onRetry }: PacedErpOptions): RecordInErp {
  return async (op) => {
    let last = '';
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (attempt > 1) onRetry?.(op.kind);
      const result = await pacer.run(op.kind, costs[op.kind], () => erp.record(op), { retry: attempt > 1 });
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
    return { kind: 'exhausted', reason: `gave up after ${maxAttempts} attempts: ${last}`, attempts: maxAttempts };
  };
}
