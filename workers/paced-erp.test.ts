// Giving up on an operation: the ERP is asked first, since an earlier attempt (timed out, or made
// by a process that died mid-call) may have recorded it. A fake ERP, a real pacer.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Pacer } from '../lib/pacing.js';
import type { ErpClient } from './erp-client.js';
import { pacedErp } from './paced-erp.js';

function setup(found: Awaited<ReturnType<ErpClient['find']>>) {
  const pacer = new Pacer({ capacity: 100_000, sliceMs: 10 });
  pacer.start();
  let calls = 0;
  const erp: Pick<ErpClient, 'record' | 'find'> = {
    record: async () => {
      calls++;
      return { kind: 'throttled', retryAfterMs: 1 };
    },
    find: async () => found,
  };
  const record = pacedErp({ erp, pacer, costs: { order: 1, 'stock-movement': 1 }, maxAttempts: 3 });
  return { record: () => record({ operationId: 'order:1', kind: 'order', payload: {} }), calls: () => calls, stop: () => pacer.stop() };
}

describe('paced ERP calls past the attempt limit', () => {
  it('report recorded when the ERP holds the operation after all', async () => {
    const s = setup({ reference: 'ERP-1' });
    assert.deepEqual(await s.record(), { kind: 'recorded', reference: 'ERP-1', duplicate: true });
    assert.equal(s.calls(), 3);
    await s.stop();
  });

  it('give up with the reason when the ERP does not hold it, or cannot say', async () => {
    for (const found of [undefined, 'unknown'] as const) {
      const s = setup(found);
      const final = await s.record();
      assert.equal(final.kind, 'exhausted');
      assert.match((final as { reason: string }).reason, /gave up after 3 attempts: ERP throttled/);
      await s.stop();
    }
  });
});
