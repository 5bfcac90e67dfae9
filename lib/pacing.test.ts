// The pacer on a hand-driven clock: what it releases per slice, not how long anything takes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Pacer } from './pacing.js';
import { eventually } from '../harness/process.js';

/** A clock the test moves, and a pacer whose slices the test triggers. */
function setup(capacity: number) {
  let now = 1_000_000;
  const pacer = new Pacer({ capacity, sliceMs: 100, now: () => now });
  let started = 0;
  const startedBy = new Map<string, number>();
  const enqueue = (n: number, workflow = 'w', cost = 1) => {
    for (let i = 0; i < n; i++) {
      void pacer.run(workflow, cost, async () => {
        started += cost;
        startedBy.set(workflow, (startedBy.get(workflow) ?? 0) + cost);
      });
    }
  };
  /** Lets Bottleneck run whatever the reservoir allows, until nothing more starts. */
  const settle = async () => {
    let last = -1;
    let quiet = 0;
    while (quiet < 3) {
      await new Promise((r) => setTimeout(r, 1));
      if (pacer.spent === last) quiet++;
      else quiet = 0;
      last = pacer.spent;
    }
  };
  const advance = async (slices: number, ms = 100) => {
    for (let i = 0; i < slices; i++) {
      now += ms;
      pacer.slice();
      await settle();
    }
  };
  return { pacer, enqueue, advance, settle, units: () => started, unitsOf: (w: string) => startedBy.get(w) ?? 0, tick: (ms: number) => (now += ms), now: () => now };
}

/**
 * What was released when: each note() records how much `released` (request units so far) grew since
 * the last one, at the clock's time; `worst` is the most released within any one second starting
 * at a release (half-open, as the ERP's windows are).
 */
function releaseLog(released: () => number, now: () => number) {
  const log: Array<[at: number, units: number]> = [];
  let before = released();
  return {
    log,
    note() {
      if (released() > before) log.push([now(), released() - before]);
      before = released();
    },
    worst(): number {
      let worst = 0;
      for (const [start] of log) worst = Math.max(worst, log.filter(([at]) => at >= start && at < start + 1000).reduce((n, [, units]) => n + units, 0));
      return worst;
    },
  };
}

describe('pacer', () => {
  it('carries fractional credit over, so 20,000 RU/s over 7 partitions is not truncated', async () => {
    const t = setup(20_000 / 7); // 2857.14… RU/s: 285.714… per 100 ms slice
    t.enqueue(40_000);
    await t.advance(50);
    // 5 s at 2857.14 RU/s = 14,285.7 units; truncating each slice to 285 would give 14,250.
    assert.ok(Math.abs(t.units() - 14_285) <= 1, `released ${t.units()}`);
    await t.pacer.stop();
  });

  it('retunes to a new capacity: a cut counts what the last second released at the old rate, a raise applies at once', async () => {
    const t = setup(1000);
    t.enqueue(20_000);
    await t.advance(10);
    assert.ok(Math.abs(t.units() - 1000) <= 1, `first second: ${t.units()}`);
    t.pacer.setCapacity(250);
    // The last second released 1000 at 100 a slice: nothing more until that second's releases have
    // left the window down to 200, at the eighth slice after the cut (as with leases handed to
    // another process: it spends them at once, and the service's window holds what both release);
    // then a slice of 25 at a time.
    await t.advance(10);
    assert.ok(Math.abs(t.units() - 1075) <= 1, `the second after the cut: ${t.units()}`);
    await t.advance(10);
    assert.ok(Math.abs(t.units() - 1325) <= 1, `then 250 a second: ${t.units()}`);
    t.pacer.setCapacity(3000);
    await t.advance(10);
    assert.ok(Math.abs(t.units() - 4325) <= 1, `after the raise: ${t.units()}`);
    await t.pacer.stop();
  });

  it('keeps every sliding second within the capacity when credit waited and work comes back late in a slice', async () => {
    const t = setup(1000);
    const { note, worst } = releaseLog(t.units, t.now);
    // A slice's credit waits in the reservoir through a slice with nothing to spend it on, and work
    // arrives halfway through the next: the waiting credit goes out then, at once, and the slices
    // go on every 100 ms after.
    await t.advance(2);
    t.tick(50);
    t.enqueue(5000);
    await t.settle();
    note();
    assert.equal(t.units(), 100, 'the waiting slice goes out when the work arrives');
    await t.advance(1, 50);
    note();
    for (let i = 0; i < 30; i++) {
      await t.advance(1);
      note();
    }
    assert.ok(worst() <= 1000, `${worst()} RU released within one second, capacity 1000`);
    // And nothing is lost for it: 3 s of capacity after the late start, less at most a slice.
    assert.ok(t.units() >= 3000, `${t.units()} released in 3.1 s`);
    await t.pacer.stop();
  });

  it('lets an operation dearer than a second of capacity go alone, and holds the next second within the capacity after it', async () => {
    const t = setup(100);
    t.enqueue(1, 'big', 500);
    let slices = 0;
    while (t.unitsOf('big') === 0 && slices < 100) {
      await t.advance(1);
      slices++;
    }
    assert.equal(slices, 50, 'it goes once five seconds of credit are in');
    const bigAt = t.now();
    t.enqueue(300, 'small', 1);
    const small = releaseLog(() => t.unitsOf('small'), t.now);
    for (let i = 0; i < 40; i++) {
      await t.advance(1);
      small.note();
    }
    assert.ok(small.log.length > 0 && small.log[0]![0] >= bigAt + 1000, 'nothing more within the second of the big one');
    assert.ok(small.worst() <= 100, `${small.worst()} RU within one second after the big one, capacity 100`);
    await t.pacer.stop();
  });

  it('saves no burst while idle: at most one slice of credit waits for new work, also after a stalled slice', async () => {
    const t = setup(1000);
    await t.advance(600); // a minute with nothing to do
    t.enqueue(5000);
    await t.settle();
    assert.equal(t.units(), 100, 'one slice of 100 ms at 1000 RU/s');
    await t.advance(1, 60_000); // a slice a minute late
    assert.equal(t.units(), 200, 'then one more slice');
    await t.pacer.stop();
  });

  it('charges each operation its cost', async () => {
    const t = setup(1000);
    t.enqueue(500, 'w', 10);
    await t.advance(10);
    assert.equal(t.units(), 1000, '100 operations of 10 RU in one second');
    await t.pacer.stop();
  });

  it('releases nothing until Retry-After after a 429, then recovers its rate slowly', async () => {
    const t = setup(1000);
    t.enqueue(50_000);
    await t.advance(10);
    const before = t.units();
    t.pacer.throttled(500);
    assert.equal(t.pacer.rate, 0);
    await t.advance(4);
    assert.equal(t.units(), before, 'nothing released while paused');
    await t.advance(2);
    assert.ok(t.pacer.factor < 1, 'the rate was cut');
    const cut = t.pacer.factor;
    await t.advance(20);
    assert.ok(t.pacer.factor > cut, 'and it recovers');
    await t.advance(100);
    assert.equal(t.pacer.factor, 1, 'fully, in the end');
    await t.pacer.stop();
  });

  it('shares the capacity between workflows by their weights', async () => {
    const t = setup(3000);
    t.pacer.setWeights({ orders: 2, movements: 1 });
    t.enqueue(10_000, 'orders', 10);
    t.enqueue(10_000, 'movements', 10);
    await t.advance(20);
    const ratio = t.unitsOf('orders') / t.unitsOf('movements');
    assert.ok(ratio > 1.8 && ratio < 2.2, `orders:movements = ${ratio.toFixed(2)}`);
    t.pacer.setWeights({ orders: 1, movements: 3 });
    const [o, m] = [t.unitsOf('orders'), t.unitsOf('movements')];
    await t.advance(20);
    const ratio2 = (t.unitsOf('movements') - m) / (t.unitsOf('orders') - o);
    assert.ok(ratio2 > 2.6 && ratio2 < 3.4, `movements:orders = ${ratio2.toFixed(2)}`);
    await t.pacer.stop();
  });
});

describe('pacer on the real clock', () => {
  it('releases what the window held back when its oldest release leaves it, with no slice in between', async () => {
    // No slice comes after the first (a minute apart): only the wake-up can release more. A window
    // of 200 ms allows 200 RU at 1000 RU/s; a minute of credit would allow 600 at once.
    let skipped = 0;
    const now = () => Date.now() + skipped;
    const pacer = new Pacer({ capacity: 1000, sliceMs: 60_000, windowMs: 200, now });
    pacer.start();
    const released: number[] = [];
    for (let i = 0; i < 600; i++) void pacer.run('w', 1, async () => void released.push(now()));
    skipped = 60_000;
    pacer.slice(); // a minute's credit, up to the slice of a minute: all 600 could go at once
    try {
      await eventually(() => released.length === 600, { what: '600 released through the wake-ups', timeoutMs: 30_000, intervalMs: 20 });
      // Held back, not sent at once: three windows of 200 (the bound itself is checked on the
      // hand-driven clock above; here the times carry the event loop's own delays).
      assert.ok(released[599]! - released[0]! >= 350, `all 600 within ${released[599]! - released[0]!} ms`);
    } finally {
      await pacer.stop();
    }
  });
});
