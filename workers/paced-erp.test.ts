// Giving up on an operation: the ERP is asked first, since an earlier attempt (timed out, or made
// by a process that died mid-call) may have recorded it; while it cannot answer, it is asked again.
// A fake ERP (the look-up's answers are the point), a real pacer.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Pacer } from '../lib/pacing.js';
import type { ErpClient } from './erp-client.js';
import { pacedErp } from './paced-erp.js';
import { eventually } from '../harness/process.js';

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

describe('paced ERP calls under way at once', () => {
  it('are at most `concurrency` per kind of operation, the rest waiting before the pacer', async () => {
    const pacer = new Pacer({ capacity: 100_000, sliceMs: 10 });
    pacer.start();
    const atErp = new Map<string, number>();
    const most = new Map<string, number>();
    const release: Array<() => void> = [];
    const erp: Pick<ErpClient, 'record' | 'find'> = {
      record: async (op) => {
        atErp.set(op.kind, (atErp.get(op.kind) ?? 0) + 1);
        most.set(op.kind, Math.max(most.get(op.kind) ?? 0, atErp.get(op.kind)!));
        // The ERP answers only when the test lets it: every call released is under way at once.
        await new Promise<void>((resolve) => release.push(resolve));
        atErp.set(op.kind, atErp.get(op.kind)! - 1);
        return { kind: 'recorded', reference: `ERP-${op.operationId}`, duplicate: false };
      },
      find: async () => undefined,
    };
    const record = pacedErp({ erp, pacer, costs: { order: 1, 'stock-movement': 1 }, maxAttempts: 3, concurrency: 3 });
    const all = [
      ...Array.from({ length: 10 }, (_, i) => record({ operationId: `order:${i}`, kind: 'order', payload: {} })),
      ...Array.from({ length: 2 }, (_, i) => record({ operationId: `movement:${i}`, kind: 'stock-movement', payload: {} })),
    ];
    const done = Promise.all(all);
    let settled = false;
    void done.then(() => (settled = true));
    // Three orders and both movements reach the ERP; the other orders wait for a place.
    await eventually(() => release.length === 5, { timeoutMs: 5000, intervalMs: 2, what: 'three orders and two movements at the ERP' });
    assert.deepEqual([atErp.get('order'), atErp.get('stock-movement')], [3, 2]);
    // Then answer one call at a time, as soon as one is at the ERP, until all are recorded.
    for (let answered = 0; answered < 12; answered++) {
      await eventually(() => release.length > 0, { timeoutMs: 5000, intervalMs: 2, what: 'a call at the ERP' });
      release.shift()!();
    }
    const finals = await done;
    assert.ok(settled);
    assert.equal(finals.filter((f) => f.kind === 'recorded').length, 12);
    assert.equal(most.get('order'), 3, 'never more than three orders at the ERP, and three once enough wait');
    assert.equal(most.get('stock-movement'), 2, 'the movements do not wait behind the orders');
    await pacer.stop();
  });
});

