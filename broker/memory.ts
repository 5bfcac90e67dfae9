// Keeps the broker's resident memory near its live data while a backlog streams through it. Every
// message passes through Buffers outside the JavaScript heap (the parsed publish, its encoded
// copy, a row read back from SQLite, a delivery); those that lived long enough to be promoted
// (waiting for a commit, or in a group's window) are only freed by a full collection, which V8
// starts on its own only after 64 MiB of such memory has piled up: with the heap's own growth
// that took a 100 MiB broker past 230 MiB draining 100,000 messages. So the broker asks for a
// full collection itself once `budgetBytes` more has piled up (a few milliseconds, a few times a
// second at most while a backlog moves), and once more when the burst is over (about two seconds
// without growth), so that what it left behind is freed instead of waiting for the next burst.
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export type Collect = () => void;

/** Buffers and other memory outside the JavaScript heap (cheaper to read than process.memoryUsage()). */
const external = () => getHeapStatistics().external_memory;

/** V8's collector, made callable without starting node with --expose-gc. */
function exposeCollector(): Collect {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as Collect;
}

/** Whether to collect now: external memory grew by the budget since the last collection. */
export function shouldCollect(externalBytes: number, afterLastCollection: number, budgetBytes: number): boolean {
  return externalBytes - afterLastCollection >= budgetBytes;
}

export class MemoryTrim {
  #timer: NodeJS.Timeout | undefined;
  #baseline = 0;
  #collections = 0;
  /** Ticks in a row without growth since a collection the burst asked for; undefined once settled. */
  #quiet: number | undefined;
  readonly #collect: Collect;

  constructor(
    private readonly budgetBytes = 16 * 1024 * 1024,
    private readonly intervalMs = 200,
    private readonly settleTicks = 10,
    collect?: Collect,
  ) {
    this.#collect = collect ?? exposeCollector();
  }

  start(): void {
    this.#baseline = external();
    this.#timer = setInterval(() => this.tick(), this.intervalMs);
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
    if (shouldCollect(now, this.#baseline, this.budgetBytes)) {
      this.#run();
      this.#quiet = 0;
      return;
    }
    if (this.#quiet === undefined) return;
    this.#quiet = now - this.#baseline < this.budgetBytes / 16 ? this.#quiet + 1 : 0;
    if (this.#quiet >= this.settleTicks) {
      this.#run();
      this.#quiet = undefined;
    }
  }

  #run(): void {
    this.#collect();
    this.#collections++;
    this.#baseline = external();
  }
}
