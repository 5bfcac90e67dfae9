// Giving up on an operation: the ERP is asked first, since an earlier attempt (timed out, or made
// by a process that died mid-call) may have recorded it; while it cannot answer, it is asked again.
// A fake ERP (the look-up's answers are the point), a real pacer.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Pacer } from '../lib/pacing.js';
import type { ErpClient } from './erp-client.js';
import { pacedErp } from './paced-erp.js';

type Found = Awaited<ReturnType<ErpClient['find']>>;

/** `answers` are the ERP's replies to the look-up, in turn; the last one repeats. */
function setup(...answers: Found[]) {
  const pacer = new Pacer({ capacity: 100_000, sliceMs: 10 });
  pacer.start();
  let calls = 0;
  const erp: Pick<ErpClient, 'record' | 'find'> = {
    record: async () => {
      calls++;
      return { kind: 'throttled', retryAfterMs: 1 };
    },
    find: async () => {
      finds++;
      return answers.length > 1 ? answers.shift() : answers[0];
    },
  };
  let finds = 0;
  const record = pacedErp({ erp, pacer, costs: { order: 1, 'stock-movement': 1 }, maxAttempts: 3 });
  return { record: () => record({ operationId: 'order:1', kind: 'order', payload: {} }), calls: () => calls, finds: () => finds, stop: () => pacer.stop() };
}

describe('paced ERP calls past the attempt limit', () => {
  it('report recorded when the ERP holds the operation after all', async () => {
    const s = setup({ reference: 'ERP-1' });
    assert.deepEqual(await s.record(), { kind: 'recorded', reference: 'ERP-1', duplicate: true });
    assert.equal(s.calls(), 3);
    await s.stop();
  });

  it('give up with the reason when the ERP says it does not hold it', async () => {
    const s = setup(undefined);
    const final = await s.record();
    assert.equal(final.kind, 'exhausted');
    assert.match((final as { reason: string }).reason, /gave up after 3 attempts: ERP throttled/);
    await s.stop();
  });

  it('ask again, without deciding, while the ERP cannot say', async () => {
    const gone = setup('unknown', 'unknown', undefined);
    assert.equal((await gone.record()).kind, 'exhausted');
    assert.equal(gone.finds(), 3);
    await gone.stop();
    const held = setup('unknown', { reference: 'ERP-2' });
    assert.deepEqual(await held.record(), { kind: 'recorded', reference: 'ERP-2', duplicate: true });
    assert.equal(held.finds(), 2);
    await held.stop();
  });
});
