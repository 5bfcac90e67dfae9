// Keeps the broker's resident memory near its live data while a backlog streams through it. Every
// message passes through Buffers outside the JavaScript heap (the parsed publish, its encoded
// copy, a row read back from SQLite, a delivery); those that lived long enough to be promoted
// (waiting for a commit, or in a group's window) are only freed by a full collection, which V8
// starts on its own only after 64 MiB of such memory has piled up: with the heap's own growth
// that took a 100 MiB broker past 230 MiB draining 100,000 messages. So the broker asks for a
// full collection itself once `budgetBytes` more has piled up (a few milliseconds, a few times a
// second at most while a backlog moves), and once more when the burst is over (about two seconds
// without growth), so that what it left behind is freed instead of waiting for the next burst;
// then `settled` runs, which in the broker hands what the C library and SQLite freed back to the
// system (native-heap.ts) and logs HANDED_BACK.
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export type Collect = () => void;

/** The broker's log message once a burst is over and freed memory went back (bench:backlog waits for it). */
export const HANDED_BACK = 'a burst is over: freed memory handed back';

/** Buffers and other memory outside the JavaScript heap (cheaper to read than process.memoryUsage()). */
const external = () => getHeapStatistics().external_memory;

/** V8's collector, made callable without starting node with --expose-gc. */
export function exposeCollector(): Collect {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as Collect;
}

/** How often collecting may run: what the last one took, how long ago it ended, and the most of the broker's time they may take. */
export interface CollectPace {
  lastMs: number;
  sinceLastMs: number;
  maxShare: number;
}

/**
 * Whether to collect now: external memory grew by the budget since the last collection, and
 * collections stay within `maxShare` of the time (after one that took `lastMs`, the next waits
 * `lastMs × (1 / maxShare − 1)`) unless twice the budget has piled up. With many messages a
 * second the budget fills up to five times a second, and collecting each time takes a large share
 * of the broker's time; memory then peaks up to one budget higher instead.
 */
export function shouldCollect(externalBytes: number, afterLastCollection: number, budgetBytes: number, pace?: CollectPace): boolean {
  const grown = externalBytes - afterLastCollection;
  if (grown < budgetBytes) return false;
  // Twice the budget: now, whatever it costs (memory stays bounded).
  return !pace || grown >= 2 * budgetBytes || pace.sinceLastMs >= pace.lastMs * (1 / pace.maxShare - 1);
}

export interface MemoryTrimOptions {
  /** Buffer memory that may pile up before a full collection is asked for. */
  budgetBytes?: number;
  intervalMs?: number;
  /** Ticks without growth after which a burst is over. */
  settleTicks?: number;
  collect?: Collect;
  /** The most of the broker's time full collections asked for here may take. */
  maxShare?: number;
  /**
   * Runs once a burst is over, after its last collection: memory freed outside the JavaScript
   * heap (the C library's, SQLite's page cache) can be handed back to the system then.
   */
  settled?: () => void;
}

export class MemoryTrim {
  #timer: NodeJS.Timeout | undefined;
  #baseline = 0;
  #collections = 0;
  /** How long the last collection took, and when it ended (performance.now()). */
  #lastMs = 0;
  #lastEnd = 0;
  /** Ticks in a row without growth since a collection the burst asked for; undefined once settled. */
  #quiet: number | undefined;
  readonly #collect: Collect;
  readonly #budgetBytes: number;
  readonly #intervalMs: number;
  readonly #settleTicks: number;
  readonly #maxShare: number;
  readonly #settled: (() => void) | undefined;

  constructor({ budgetBytes = 16 * 1024 * 1024, intervalMs = 200, settleTicks = 10, collect, maxShare = 0.05, settled }: MemoryTrimOptions = {}) {
    this.#collect = collect ?? exposeCollector();
    this.#budgetBytes = budgetBytes;
    this.#intervalMs = intervalMs;
    this.#settleTicks = settleTicks;
    this.#maxShare = maxShare;
    this.#settled = settled;
  }

  start(): void {
    this.#baseline = external();
    this.#timer = setInterval(() => this.tick(), this.#intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Full collections asked for so far, for metrics. */
  get collections(): number {
    return this.#collections;
  }

  tick(): void {
    const now = external();
    if (now < this.#baseline) this.#baseline = now;
    const pace = { lastMs: this.#lastMs, sinceLastMs: performance.now() - this.#lastEnd, maxShare: this.#maxShare };
    if (shouldCollect(now, this.#baseline, this.#budgetBytes, pace)) {
      this.#run();
      this.#quiet = 0;
      return;
    }
    if (this.#quiet === undefined) return;
    this.#quiet = now - this.#baseline < this.#budgetBytes / 16 ? this.#quiet + 1 : 0;
    if (this.#quiet >= this.#settleTicks) {
      this.#run();
      this.#quiet = undefined;
      this.#settled?.();
    }
  }

  #run(): void {
    const started = performance.now();
    this.#collect();
    this.#lastEnd = performance.now();
    this.#lastMs = this.#lastEnd - started;
    this.#collections++;
    this.#baseline = external();
  }
}
