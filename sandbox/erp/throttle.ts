// Provisioned capacity, the way Cosmos DB meters it: request units per one-second window. A call
// that would take the window past capacity is rejected with the time left until the next window.
export interface Second {
  /** Unix second of the window. */
  second: number;
  accepted: number;
  rejected: number;
  units: number;
}

export class Throttle {
  private window: Second = { second: 0, accepted: 0, rejected: 0, units: 0 };
  private readonly history: Second[] = [];

  constructor(
    readonly capacity: number,
    private readonly now: () => number = Date.now,
    private readonly keepSeconds = 300,
  ) {}

  /** Charges `units` if the current window has room; otherwise tells how long to wait (ms). */
  take(units: number): { ok: true } | { ok: false; retryAfterMs: number } {
    const nowMs = this.now();
    const w = this.current(nowMs);
    if (w.units + units > this.capacity) {
      w.rejected++;
      return { ok: false, retryAfterMs: Math.max(1, 1000 - (nowMs % 1000)) };
    }
    w.units += units;
    w.accepted++;
    return { ok: true };
  }

  /** Finished one-second windows, oldest first, plus the one in progress. */
  seconds(): Second[] {
    this.current(this.now());
    return [...this.history, { ...this.window }];
  }

  private current(nowMs: number): Second {
    const second = Math.floor(nowMs / 1000);
    if (second !== this.window.second) {
      if (this.window.second !== 0) {
        this.history.push(this.window);
        if (this.history.length > this.keepSeconds) this.history.shift();
      }
      this.window = { second, accepted: 0, rejected: 0, units: 0 };
    }
    return this.window;
  }
}
