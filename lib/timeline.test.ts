// The hops an order's events carry (lib/timeline.ts): what a stage may add, and what a hostile or
// broken producer cannot slip in.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_HOPS, hop, hopsSchema, journey, queueWait } from './timeline.js';

describe('timeline hops', () => {
  it('measures a hop from its start to its end, never negative', () => {
    assert.deepEqual(hop('erp attempt', 'worker', 1_000, 1_250, { attempt: 1, status: 429 }), {
      name: 'erp attempt',
      service: 'worker',
      start: new Date(1_000).toISOString(),
      durationMs: 250,
      detail: { attempt: 1, status: 429 },
    });
    assert.equal(hop('wait for pace', 'worker', 2_000, 1_000).durationMs, 0);
  });

  it("measures the wait in a queue from the event's time, and never from the future or from garbage", () => {
    const past = new Date(Date.now() - 500).toISOString();
    const waited = queueWait('stock', past, 'woodytoys/orders/created');
    assert.ok(waited.durationMs >= 500);
    assert.equal(waited.detail?.topic, 'woodytoys/orders/created');
    assert.equal(queueWait('stock', new Date(Date.now() + 60_000).toISOString(), 't').durationMs, 0, 'a clock ahead of ours waits nothing');
    assert.equal(queueWait('stock', 'not a time', 't').durationMs, 0);
  });

  it('carries the earlier hops first, and at most MAX_HOPS (the latest)', () => {
    const earlier = [hop('accept', 'orders', 0, 1)];
    const own = hop('stock reservation', 'stock', 1, 2);
    assert.deepEqual(journey(earlier, own), [...earlier, own]);
    assert.deepEqual(journey(undefined, own), [own]);
    const many = Array.from({ length: MAX_HOPS + 5 }, (_, i) => hop('erp attempt', 'worker', i, i + 1));
    const kept = journey(many);
    assert.equal(kept.length, MAX_HOPS);
    assert.equal(kept.at(-1), many.at(-1));
    assert.ok(hopsSchema.safeParse(kept).success);
  });

  it('refuses hops a producer should not send: unknown fields, markup in names, long or many facts, too many hops', () => {
    const ok = hop('accept', 'orders', 0, 1);
    const bad = [
      [{ ...ok, extra: 1 }],
      [{ ...ok, name: '<script>' }],
      [{ ...ok, service: 'Orders Service' }],
      [{ ...ok, durationMs: -1 }],
      [{ ...ok, start: 'yesterday' }],
      [{ ...ok, detail: { note: 'x'.repeat(201) } }],
      [{ ...ok, detail: Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`k${i}`, i])) }],
      [{ ...ok, detail: { nested: { a: 1 } } }],
      Array.from({ length: MAX_HOPS + 1 }, () => ok),
    ];
    for (const hops of bad) assert.equal(hopsSchema.safeParse(hops).success, false, JSON.stringify(hops).slice(0, 120));
    assert.equal(hopsSchema.safeParse([ok]).success, true);
  });
});
