// Open-loop pacing for the load tool: the i-th request is due at start + i / rate, whatever became
// of the ones before it. A timer that fires late (a busy machine) is caught up on at once instead
// of pushing every later send back, so the rate asked is the rate sent; a closed loop or a
// fixed-interval timer drifts below it.
export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** When the i-th of a run at `ratePerSecond` is due, counted from `start` (ms). */
export const dueAt = (start: number, i: number, ratePerSecond: number) => start + (i * 1000) / ratePerSecond;

/**
 * Calls send(i) for i = 0 … count − 1, each at its due time, without waiting for any answer (open
 * loop). Returns when each was sent (clock ms).
 */
export async function sendOnSchedule(count: number, ratePerSecond: number, send: (i: number) => void, clock: Clock = realClock): Promise<number[]> {
  const start = clock.now();
  const sentAt: number[] = [];
  for (let i = 0; i < count; i++) {
    const due = dueAt(start, i, ratePerSecond);
    // A timer may also wake a little early: sleep again until the due time has come.
    for (let wait = due - clock.now(); wait > 0; wait = due - clock.now()) await clock.sleep(wait);
    sentAt.push(clock.now());
    send(i);
  }
  return sentAt;
}

/** Requests per second actually sent: count − 1 intervals between the first and the last send. */
export function achievedRate(sentAt: readonly number[]): number | undefined {
  if (sentAt.length < 2) return undefined;
  const span = sentAt.at(-1)! - sentAt[0]!;
  return span > 0 ? ((sentAt.length - 1) * 1000) / span : Number.POSITIVE_INFINITY;
}
