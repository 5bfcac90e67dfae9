// Group commit: every write queued during one turn of the event loop runs in a single SQLite
// transaction, in the order queued. Callers that need durability (a PUBACK, a SUBACK) await the
// promise; the rest only rely on the ordering: a later write never commits before an earlier one.
import type { DB } from '../lib/db.js';

type Write = () => void;

export class CommitQueue {
  #writes: Write[] = [];
  #waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  #scheduled = false;
  #commits = 0;
  #written = 0;

  constructor(
    private readonly db: DB,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Queues a write and resolves once its transaction has committed. */
  write(fn: Write): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.queue(fn);
    });
  }

  /** Queues a write without waiting for it. */
  queue(fn: Write): void {
    this.#writes.push(fn);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Commits everything queued so far, now. */
  flush(): void {
    this.#scheduled = false;
    const writes = this.#writes;
    const waiters = this.#waiters;
    if (writes.length === 0) return;
    this.#writes = [];
    this.#waiters = [];
    try {
      this.db.transaction(() => {
        for (const w of writes) w();
      })();
      this.#commits++;
      this.#written += writes.length;
    } catch (err) {
      for (const w of waiters) w.reject(err);
      this.onError(err);
      return;
    }
    for (const w of waiters) w.resolve();
  }

  /** Transactions committed and writes they held, for metrics. */
  get stats() {
    return { commits: this.#commits, writes: this.#written };
  }
}
