// Local pacing of calls to a throttled service (the ERP): operations cost request units and are
// released at the capacity the process may use (its leases plus its reserved capacity), in small
// slices, with the fraction of a unit a slice could not release carried to the next one, so the
// long-run rate matches the capacity (a truncating limiter turns 25/s into 20/s).
//
// Bottleneck holds the budget: its reservoir is credited every slice and every batch it runs
// weighs what its operations cost. A batch is whatever operations are waiting when the previous one
// ran, chosen across workflows in proportion to their weights (stride scheduling), so two workflows
// share the capacity by their backlog. Batches rather than one Bottleneck job per call because each
// job costs Bottleneck several timer turns (≈ 400 jobs/s on a busy 2-core host), not enough for
// thousands of calls per second. A 429 cuts the rate and stops releases until Retry-After; the
// rate then recovers slowly. Bottleneck is used locally only: its Redis clustering is broken on Redis 7.
//
// The service meters one-second windows, and a bucket of one slice lets a window hold a slice too
// many: credit that waited in the reservoir (nothing to spend it on, or every place under way
// taken) goes out late in one slice, and the next ten slices go out at full rate after it. That
// happened in the demo exactly when the workers first kept up with the ERP, and a tenth of a
// window's worth came back as 429s. So releases are also held to the capacity over every sliding
// window (`windowMs`, the service's one second) of what was really released: credit that would
// take the last window past it waits, and is released as soon as the oldest release leaves the
// window. The same bound holds when the capacity falls (leases handed to another process): what
// was released at the old rate in the last second counts against the new one.
import Bottleneck from 'bottleneck';

export interface PacerOptions {
  /** Request units per second to release; retune with setCapacity. */
  capacity?: number;
  /** How often credit is released (100–200 ms in the pattern). */
  sliceMs?: number;
  /** The reservoir keeps at most this many slices of credit: unspent capacity is not saved up. */
  burstSlices?: number;
  /** Rate multiplier applied on a 429, and the lowest it may fall to. */
  cutFactor?: number;
  minFactor?: number;
  /** Share of the capacity regained per second after a cut. */
  recoveryPerSecond?: number;
  /** The service's metering window: releases in any such sliding window stay within the capacity. */
  windowMs?: number;
  now?: () => number;
}

interface Job {
  workflow: string;
  cost: number;
  start: () => void;
}

export class Pacer {
  readonly limiter = new Bottleneck({ reservoir: 0, maxConcurrent: null });
  readonly #opts: Required<Omit<PacerOptions, 'capacity'>>;
  #capacity: number;
  #factor = 1;
  #credit = 0;
  /** What Bottleneck's reservoir holds, tracked here so a slice needs no round trip to read it. */
  #reservoir = 0;
  #last: number;
  #pausedUntil = 0;
  #lastCut = -Infinity;
  #timer: NodeJS.Timeout | undefined;
  readonly #waiting = new Map<string, Job[]>();
  readonly #weights = new Map<string, number>();
  readonly #pass = new Map<string, number>();
  #virtualTime = 0;
  #batchPending = false;
  /** Weight of the batch handed to Bottleneck and not started yet (already taken from #reservoir). */
  #pendingWeight = 0;
  #dispatchQueued = false;
  #largestCost = 1;
  /** Releases within the last windowMs, oldest first: [when, request units]; and their sum. */
  readonly #recent: Array<[number, number]> = [];
  #recentUnits = 0;
  /** Wakes dispatch when the oldest release leaves the window, while credit waits for it. */
  #windowTimer: NodeJS.Timeout | undefined;
  /** Request units released to operations so far (for observed-rate estimates). */
  spent = 0;
  readonly released = new Map<string, number>();

  constructor({ capacity = 0, sliceMs = 100, burstSlices = 1, cutFactor = 0.9, minFactor = 0.25, recoveryPerSecond = 0.05, windowMs = 1000, now = Date.now }: PacerOptions = {}) {
    this.#opts = { sliceMs, burstSlices, cutFactor, minFactor, recoveryPerSecond, windowMs, now };
    this.#capacity = capacity;
    this.#last = now();
  }

  /** Releases a slice every sliceMs until stop(). Tests call slice() themselves instead. */
  start(): void {
    this.#last = this.#opts.now();
    this.#timer ??= setInterval(() => this.slice(), this.#opts.sliceMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    clearTimeout(this.#windowTimer);
    this.#windowTimer = undefined;
    await this.limiter.stop({ dropWaitingJobs: true }).catch(() => undefined);
  }

  /** The capacity it paces at before any 429 cut: leased plus reserved. */
  get capacity(): number {
    return this.#capacity;
  }

  /** Request units per second being released now. */
  get rate(): number {
    return this.#opts.now() < this.#pausedUntil ? 0 : this.#capacity * this.#factor;
  }

  get factor(): number {
    return this.#factor;
  }

  /** Operations waiting for credit, per workflow or in all. */
  waiting(workflow?: string): number {
    if (workflow !== undefined) return this.#waiting.get(workflow)?.length ?? 0;
    let n = 0;
    for (const q of this.#waiting.values()) n += q.length;
    return n;
  }

  /** Retunes to a new capacity (leases gained or lost). Credit already released above it is taken back. */
  setCapacity(capacity: number): void {
    if (capacity === this.#capacity) return;
    this.#capacity = Math.max(0, capacity);
    const cap = this.#cap();
    if (this.#reservoir > cap) {
      this.#reservoir = cap;
      void this.limiter.updateSettings({ reservoir: cap + this.#pendingWeight });
    }
    this.#credit = Math.min(this.#credit, 1);
  }

  /** Relative shares of the workflows (e.g. their backlogs in request units); default 1 each. */
  setWeights(weights: Record<string, number>): void {
    for (const [w, v] of Object.entries(weights)) this.#weights.set(w, Math.max(v, 1e-6));
  }

  /**
   * Runs `fn` once `cost` request units are available for `workflow`. A retry goes ahead of the
   * workflow's other waiting operations (it waited already).
   */
  run<T>(workflow: string, cost: number, fn: () => Promise<T>, { retry = false } = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const job: Job = { workflow, cost, start: () => void fn().then(resolve, reject) };
      let queue = this.#waiting.get(workflow);
      if (!queue) this.#waiting.set(workflow, (queue = []));
      // A workflow that was idle joins at the current virtual time: no catching up in a burst.
      if (queue.length === 0) this.#pass.set(workflow, Math.max(this.#pass.get(workflow) ?? 0, this.#virtualTime));
      if (retry) queue.unshift(job);
      else queue.push(job);
      this.#largestCost = Math.max(this.#largestCost, cost);
      this.#dispatch();
    });
  }

  /** The service answered 429: cut the rate (once per burst) and release nothing before `retryAfterMs`. */
  throttled(retryAfterMs: number): void {
    const now = this.#opts.now();
    if (now - this.#lastCut > 1000) {
      this.#factor = Math.max(this.#opts.minFactor, this.#factor * this.#opts.cutFactor);
      this.#lastCut = now;
    }
    this.#pausedUntil = Math.max(this.#pausedUntil, now + retryAfterMs);
    this.#credit = 0;
    // Bottleneck's reservoir is emptied; the batch it holds already counted against ours.
    this.#reservoir = -this.#pendingWeight;
    void this.limiter.updateSettings({ reservoir: 0 });
  }

  /** Credits one slice: the rate times the real time since the last one, fraction carried over. */
  slice(): void {
    const now = this.#opts.now();
    const elapsed = Math.max(0, now - this.#last) / 1000;
    this.#last = now;
    this.#factor = Math.min(1, this.#factor + this.#opts.recoveryPerSecond * elapsed);
    if (now < this.#pausedUntil) return;
    this.#credit += this.#capacity * this.#factor * elapsed;
    const whole = Math.floor(this.#credit);
    // The reservoir holds at most one slice (or one operation): credit a process could not spend
    // is not saved up, or it would come out later as a burst (only the fraction is kept). A slice
    // that comes late loses what its lateness was due: larger batches after a stall brought the
    // 429s back in the demo (docs/benchmarks.md).
    const room = Math.max(0, this.#cap() - this.#reservoir);
    const give = Math.min(whole, room);
    this.#credit -= give;
    if (give < whole) this.#credit -= Math.floor(this.#credit);
    if (give > 0) {
      this.#reservoir += give;
      void this.limiter.incrementReservoir(give);
    }
    // Also with no new credit: what the window held back may go now.
    if (this.#reservoir > 0) this.#dispatch();
  }

  /** What may still be released now without the last window's releases passing the capacity. */
  #windowRoom(): number {
    const now = this.#opts.now();
    const from = now - this.#opts.windowMs;
    while (this.#recent.length > 0 && this.#recent[0]![0] <= from) this.#recentUnits -= this.#recent.shift()![1];
    if (this.#recent.length === 0) this.#recentUnits = 0;
    return Math.max(0, (this.#capacity * this.#factor * this.#opts.windowMs) / 1000 - this.#recentUnits);
  }

  #wakeWhenWindowMoves(): void {
    if (this.#windowTimer || !this.#timer || this.#recent.length === 0) return;
    const wait = Math.max(1, this.#recent[0]![0] + this.#opts.windowMs - this.#opts.now());
    this.#windowTimer = setTimeout(() => {
      this.#windowTimer = undefined;
      this.#dispatch();
    }, wait);
  }

  #cap(): number {
    return Math.max(Math.ceil((this.#capacity * this.#opts.sliceMs * this.#opts.burstSlices) / 1000), this.#largestCost);
  }

  /** Dispatches once the current synchronous burst of run() calls is in (they form one batch). */
  #dispatch(): void {
    if (this.#dispatchQueued) return;
    this.#dispatchQueued = true;
    queueMicrotask(() => {
      this.#dispatchQueued = false;
      this.#dispatchNow();
    });
  }

  /** Hands Bottleneck the next batch: waiting operations by weighted turn, as many as the credit covers. */
  #dispatchNow(): void {
    if (this.#batchPending) return;
    const batch: Job[] = [];
    let weight = 0;
    const budget = Math.min(this.#reservoir, this.#windowRoom());
    for (;;) {
      let pick: string | undefined;
      for (const [w, q] of this.#waiting) {
        if (q.length === 0) continue;
        if (pick === undefined || this.#pass.get(w)! < this.#pass.get(pick)!) pick = w;
      }
      if (pick === undefined) break;
      const queue = this.#waiting.get(pick)!;
      const job = queue[0]!;
      // An operation dearer than a window's capacity goes alone, once the window is empty.
      const alone = weight === 0 && this.#recentUnits === 0 && job.cost <= this.#reservoir;
      if (weight + job.cost > budget && !alone) {
        // Credit the window holds back goes out once the oldest release has left it.
        if (weight + job.cost <= this.#reservoir) this.#wakeWhenWindowMoves();
        break;
      }
      queue.shift();
      batch.push(job);
      weight += job.cost;
      const step = job.cost / (this.#weights.get(pick) ?? 1);
      this.#virtualTime = Math.max(this.#virtualTime, this.#pass.get(pick)!);
      this.#pass.set(pick, this.#pass.get(pick)! + step);
    }
    if (batch.length === 0) return;
    this.#batchPending = true;
    this.#pendingWeight = weight;
    // Taken from the tracked reservoir now; Bottleneck's own reservoir enforces the same budget.
    this.#reservoir -= weight;
    this.limiter
      .schedule({ weight }, async () => {
        this.#pendingWeight = 0;
        this.spent += weight;
        this.#recent.push([this.#opts.now(), weight]);
        this.#recentUnits += weight;
        for (const job of batch) {
          this.released.set(job.workflow, (this.released.get(job.workflow) ?? 0) + job.cost);
          job.start();
        }
      })
      .catch(() => undefined)
      .finally(() => {
        this.#batchPending = false;
        this.#dispatch();
      });
  }
}
