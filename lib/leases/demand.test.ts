// The lease-demand policy on its own: what a worker asks for, and how it splits it, for the cases
// the Rate Limiting pattern meets (one workflow, two unequal ones, nothing to do, leases lost, a 429
// cut), and the smoothing of observed spending.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  BACKLOG_HORIZON_S,
  SPENDING_HEADROOM,
  SPENDING_WINDOW_S,
  STARVING_GROWTH,
  initialSpending,
  leaseDemand,
  observeSpending,
  type DemandInputs,
} from './demand.js';

/** A worker of a 200 RU/s system in 20 partitions (10 RU/s each), alone, spending nothing, nothing waiting. */
const inputs = (over: Partial<DemandInputs> = {}): DemandInputs => ({
  workflows: [{ kind: 'order', messages: 0, cost: 10 }],
  groupBacklog: true,
  members: 1,
  spendingRate: 0,
  waiting: 0,
  capacity: 0,
  partitionCapacity: 10,
  ...over,
});

describe('leaseDemand', () => {
  it('asks for one workflow’s backlog to be drained within the horizon', () => {
    const { ru, weights } = leaseDemand(inputs({ workflows: [{ kind: 'order', messages: 30, cost: 10 }] }));
    assert.equal(ru, (30 * 10) / BACKLOG_HORIZON_S);
    assert.deepEqual(weights, { order: 30 * 10 + 10 });
  });

  it('splits between two workflows by their backlogs, and asks for both', () => {
    const { ru, weights } = leaseDemand(
      inputs({
        workflows: [
          { kind: 'order', messages: 40, cost: 10 },
          { kind: 'stock-movement', messages: 4, cost: 5 },
        ],
      }),
    );
    assert.equal(ru, 400 + 20);
    assert.deepEqual(weights, { order: 410, 'stock-movement': 25 });
    // The bigger backlog gets the bigger share of what the pacer releases.
    assert.ok(weights.order! > 10 * weights['stock-movement']!);
  });

  it('shares a group backlog among the members that want capacity, but not a local one', () => {
    const workflows = [{ kind: 'order', messages: 40, cost: 10 }];
    assert.equal(leaseDemand(inputs({ workflows, members: 4 })).ru, 100);
    assert.equal(leaseDemand(inputs({ workflows, members: 4, groupBacklog: false })).ru, 400);
  });

  it('asks for nothing with no backlog, no spending and nothing waiting; weights stay positive', () => {
    const { ru, weights } = leaseDemand(
      inputs({
        workflows: [
          { kind: 'order', messages: 0, cost: 10 },
          { kind: 'stock-movement', messages: 0, cost: 10 },
        ],
        capacity: 50,
      }),
    );
    assert.equal(ru, 0);
    // Equal shares of one operation each: whichever workflow gets work first is not starved.
    assert.deepEqual(weights, { order: 10, 'stock-movement': 10 });
  });

  it('keeps what it spends, with headroom to grow, once the backlog is gone', () => {
    const { ru } = leaseDemand(inputs({ spendingRate: 80, capacity: 100 }));
    assert.equal(ru, 80 * SPENDING_HEADROOM);
    assert.ok(ru > 80, 'more than the spending, or capacity could only ever shrink');
  });

  it('asks for at least one partition when its leases are lost and operations wait', () => {
    // Capacity 0 (every lease expired, nothing reserved) and work waiting in the pacer: 1.5 × 0 is
    // nothing, so the floor is one partition's capacity.
    const { ru } = leaseDemand(inputs({ capacity: 0, waiting: 3, groupBacklog: false, workflows: [{ kind: 'order', messages: 0, cost: 10 }] }));
    assert.equal(ru, 10);
    // Without waiting operations, a process that lost its leases asks for nothing more than its backlog.
    assert.equal(leaseDemand(inputs({ capacity: 0, waiting: 0 })).ru, 0);
  });

  it('grows geometrically while starving, from what it holds', () => {
    const { ru } = leaseDemand(inputs({ capacity: 40, waiting: 12 }));
    assert.equal(ru, 40 * STARVING_GROWTH);
    // A large backlog still wins over the starving floor.
    assert.equal(leaseDemand(inputs({ capacity: 40, waiting: 12, workflows: [{ kind: 'order', messages: 100, cost: 10 }] })).ru, 1000);
  });

  it('keeps its capacity through a 429 cut: spending falls, the starving floor follows the capacity, not the cut rate', () => {
    // Before the cut: spending 100 RU/s of a 100 RU/s capacity, work waiting.
    const before = leaseDemand(inputs({ capacity: 100, spendingRate: 100, waiting: 20 }));
    // The 429 cut the pacer's rate (to 90 % and paused): spending drops, the capacity does not.
    const after = leaseDemand(inputs({ capacity: 100, spendingRate: 30, waiting: 20 }));
    assert.equal(before.ru, 150);
    assert.equal(after.ru, 100 * STARVING_GROWTH);
    assert.ok(after.ru >= 100, 'a cut must not give leases away: the rate recovers into them');
  });
});

describe('observeSpending', () => {
  it('starts at nothing', () => {
    assert.deepEqual(initialSpending(5000), { spent: 0, at: 5000, rate: 0 });
  });

  it('moves a fraction dt / window of the way to the instant rate', () => {
    // 25 RU in 250 ms is 100 RU/s; a quarter of the window moves the average a quarter of the way.
    const s = observeSpending(initialSpending(0), 25, 250);
    assert.equal(s.rate, 100 * (0.25 / SPENDING_WINDOW_S));
    assert.equal(s.spent, 25);
    assert.equal(s.at, 250);
  });

  it('converges on a steady rate and follows it down when spending stops', () => {
    let s = initialSpending(0);
    for (let t = 1; t <= 40; t++) s = observeSpending(s, t * 25, t * 250);
    assert.ok(Math.abs(s.rate - 100) < 0.1, `steady 100 RU/s read as ${s.rate}`);
    const steady = s.rate;
    s = observeSpending(s, s.spent, s.at + 250);
    assert.ok(s.rate < steady && s.rate > 0, 'one quiet tick lowers it, not to zero');
  });

  it('takes a reading after a long pause wholly, and two in the same millisecond as one apart', () => {
    const late = observeSpending({ spent: 0, at: 0, rate: 500 }, 300, 3000);
    assert.equal(late.rate, 100, 'after more than a window only the new reading counts');
    const same = observeSpending({ spent: 0, at: 1000, rate: 0 }, 1, 1000);
    assert.ok(Number.isFinite(same.rate));
    assert.equal(same.rate, 1000 * 0.001 / SPENDING_WINDOW_S);
  });
});
