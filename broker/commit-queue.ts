// Group commit: queued writes run in a single SQLite transaction, in the order queued. Callers that
// need durability (a PUBACK, a SUBACK) await write(), which commits at the end of this turn of the
// event loop; every write of one commit shares one promise. The rest use queue(): they only rely on
// the ordering (a later write never commits before an earlier one) and may wait up to `lazyMs`, so
// that acknowledgements flowing back and forth do not pay for a commit each.
import type { DB } from '../lib/db.js';

type Write = () => void;

interface Pending {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class CommitQueue {
  #writes: Write[] = [];
  #pending: Pending | undefined;
  #immediate: NodeJS.Immediate | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #commits = 0;
  #written = 0;

  constructor(
    private readonly db: DB,
    private readonly onError: (err: unknown) => void,
    private readonly lazyMs = 10,
  ) {}

  /** Queues a write and resolves once its transaction has committed (at the end of this turn). */
  write(fn: Write): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the broker database is closed'));
    this.#writes.push(fn);
    this.#immediate ??= setImmediate(() => this.flush());
    if (!this.#pending) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.#pending = { promise, resolve, reject };
    }
    return this.#pending.promise;
  }

  /** Queues a write without waiting for it; it commits with the next write(), or within lazyMs. */
  queue(fn: Write): void {
    if (this.#closed) return;
    this.#writes.push(fn);
    if (!this.#timer && !this.#immediate) this.#timer = setTimeout(() => this.flush(), this.lazyMs);
  }

  /** Commits what is queued and refuses further writes: for shutdown, before the database closes. */
  close(): void {
    this.flush();
    this.#closed = true;
  }

  /** Commits everything queued so far, now. */
  flush(): void {
    if (this.#immediate) clearImmediate(this.#immediate);
    if (this.#timer) clearTimeout(this.#timer);
    this.#immediate = undefined;
    this.#timer = undefined;
    const writes = this.#writes;
    const pending = this.#pending;
    this.#writes = [];
    this.#pending = undefined;
    if (writes.length === 0) {
      pending?.resolve();
      return;
    }
    try {
      this.db.transaction(() => {
        for (const w of writes) w();
      })();
      this.#commits++;
      this.#written += writes.length;
    } catch (err) {
      pending?.reject(err);
      this.onError(err);
      return;
    }
    pending?.resolve();
  }

  /** Transactions committed and writes they held, for metrics. */
  get stats() {
    return { commits: this.#commits, writes: this.#written };
  }
}
