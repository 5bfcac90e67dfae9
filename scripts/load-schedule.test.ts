// The load tool's open-loop schedule, on a clock the test controls: late timers are caught up on
// rather than carried over, so the achieved rate is the rate asked.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { achievedRate, sendOnSchedule, type Clock } from './load-schedule.js';

/** A clock whose sleeps overshoot by `lateMs` (a busy machine), or wake `earlyMs` before time. */
function testClock({ lateMs = 0, earlyMs = 0 } = {}): Clock & { t: number } {
  const clock = {
    t: 1000,
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.t += Math.max(0.1, ms + lateMs - earlyMs);
    },
  };
  return clock;
}

describe('sendOnSchedule', () => {
  it('sends the i-th request at start + i / rate', async () => {
    const clock = testClock();
    const order: number[] = [];
    const sentAt = await sendOnSchedule(5, 50, (i) => order.push(i), clock);
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
    assert.deepEqual(sentAt, [1000, 1020, 1040, 1060, 1080]);
    assert.equal(achievedRate(sentAt), 50);
  });

  it('does not drift when every timer fires late: the next sends catch up', async () => {
    // Each sleep is 30 ms late, more than the 20 ms interval: a fixed-interval timer would send at
    // 1 / 50 ms = 20/s. Here the schedule holds: 101 sends span 2 s plus the last sleep's lateness.
    const clock = testClock({ lateMs: 30 });
    const sentAt = await sendOnSchedule(101, 50, () => {}, clock);
    assert.ok(sentAt.every((t, i) => t >= 1000 + i * 20 && t <= 1000 + i * 20 + 30), 'each send within one timer delay of its due time');
    const rate = achievedRate(sentAt)!;
    assert.ok(Math.abs(rate - 50) / 50 < 0.02, `achieved ${rate}/s`);
  });

  it('never sends before the due time, even when a timer wakes early', async () => {
    const clock = testClock({ earlyMs: 5 });
    const sentAt = await sendOnSchedule(10, 100, () => {}, clock);
    sentAt.forEach((t, i) => assert.ok(t >= 1000 + i * 10, `send ${i} at ${t}`));
  });

  it('has no rate to report for fewer than two sends', () => {
    assert.equal(achievedRate([]), undefined);
    assert.equal(achievedRate([5]), undefined);
  });
});
