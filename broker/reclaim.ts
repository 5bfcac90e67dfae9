// Giving disk space back after a backlog drains. SQLite keeps the pages of deleted entries for
// reuse, so a file that held a million queued messages would keep its size forever; the broker's
// database is made with incremental vacuum (lib/db.ts, `shrinkable`), and this frees pages a few at
// a time once most of the file is free: moving live pages costs work, so it waits until there is
// little left to move and no backlog is being read back (after a drain rather than during it), and
// each tick works for a bounded time.
// A checkpoint then truncates the write-ahead log and hands the freed pages back to the file system.
import type { DB } from '../lib/db.js';
import type { Logger } from '../lib/log.js';

export interface SpaceReading {
  pageSize: number;
  pageCount: number;
  freePages: number;
}

export interface ReclaimPolicy {
  /** Leave the file alone while less than this much of it is free. */
  minFreeBytes: number;
  /** ... or while less than this share of it is free. */
  minFreeShare: number;
}

export const defaultReclaimPolicy: ReclaimPolicy = { minFreeBytes: 8 * 1024 * 1024, minFreeShare: 0.5 };

/** Whether to free pages now: enough of the file is free, in bytes and as a share of it. */
export function shouldReclaim({ pageSize, pageCount, freePages }: SpaceReading, { minFreeBytes, minFreeShare }: ReclaimPolicy): boolean {
  return freePages > 0 && freePages * pageSize >= minFreeBytes && freePages >= pageCount * minFreeShare;
}

export interface ReclaimerOptions {
  db: DB;
  log: Logger;
  policy?: ReclaimPolicy;
  intervalMs?: number;
  /** Longest a tick may keep the event loop (and the database) busy. */
  budgetMs?: number;
  /** Runs before freeing pages, e.g. to commit queued writes first. */
  beforeReclaim?: () => void;
  /** While this says so (a backlog is being read back), nothing is freed: moving pages would stall it. */
  busy?: () => boolean;
}

export class SpaceReclaimer {
  #timer: NodeJS.Timeout | undefined;
  #reclaimed = 0;

  constructor(private readonly opts: ReclaimerOptions) {}

  start(): void {
    this.#timer = setInterval(() => this.tick(), this.opts.intervalMs ?? 1000);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Pages given back so far, for metrics. */
  get reclaimedPages(): number {
    return this.#reclaimed;
  }

  reading(): SpaceReading {
    const { db } = this.opts;
    return {
      pageSize: db.pragma('page_size', { simple: true }) as number,
      pageCount: db.pragma('page_count', { simple: true }) as number,
      freePages: db.pragma('freelist_count', { simple: true }) as number,
    };
  }

  /** One round: free pages for at most the time budget, then give the space back to the file system. */
  tick(): void {
    const { db, log, policy = defaultReclaimPolicy, budgetMs = 50, beforeReclaim, busy } = this.opts;
    if (!db.open || busy?.()) return;
    let reading = this.reading();
    if (!shouldReclaim(reading, policy)) return;
    beforeReclaim?.();
    const started = performance.now();
    const before = reading.freePages;
    try {
      do {
        db.pragma('incremental_vacuum(1024)');
        reading = this.reading();
      } while (reading.freePages > 0 && performance.now() - started < budgetMs);
      db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (err) {
      log.warn({ err }, 'could not give space back; will try again');
      return;
    }
    const freed = before - reading.freePages;
    this.#reclaimed += Math.max(0, freed);
    log.debug({ freedPages: freed, pages: reading.pageCount, ms: Math.round(performance.now() - started) }, 'gave disk space back');
  }
}
