// Write-ahead log checkpoints off the main thread. SQLite copies the log back into the database
// file every thousand pages or so, on the connection that happens to commit, and that copy ends
// with an fsync: the event loop stops for as long as the disk takes (tens of milliseconds on a busy
// machine), and every message or request waits behind it. Here a worker thread with its own
// connection checkpoints every `intervalMs` instead (PASSIVE: it never blocks a writer), so the copy
// and its fsync run beside the event loop, on another core when there is one. If the thread fails,
// the connection checkpoints itself again, as before.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { DB } from './db.js';
import type { Logger } from './log.js';

// Plain JavaScript run with eval: it needs no TypeScript loader, in development or in the image.
const THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file);
db.pragma('busy_timeout = 1000');
const checkpoint = () => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message || err) });
  }
};
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.on('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

export class Checkpointer {
  #worker: Worker | undefined;

  constructor(
    private readonly db: DB,
    private readonly log: Logger,
    private readonly intervalMs = 200,
  ) {}

  start(): void {
    if (this.db.memory) return;
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(THREAD, { eval: true, workerData: { file: this.db.name, driver, intervalMs: this.intervalMs } });
    worker.unref();
    worker.on('message', (m: { error?: string }) => m.error && this.log.warn({ err: m.error }, 'background checkpoint failed'));
    worker.on('error', (err) => this.#fallBack(err));
    worker.on('exit', (code) => code !== 0 && this.#fallBack(new Error(`checkpoint thread exited with ${code}`)));
    this.#worker = worker;
    this.db.pragma('wal_autocheckpoint = 0');
  }

  /** Stops the thread; the connection checkpoints itself again (and once now, before it closes). */
  async stop(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    if (!worker) return;
    worker.postMessage('stop');
    await new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    if (this.db.open) this.db.pragma('wal_autocheckpoint = 1000');
  }

  #fallBack(err: unknown): void {
    if (!this.#worker) return;
    this.#worker = undefined;
    this.log.error({ err }, 'checkpoint thread failed; checkpointing on the main thread again');
    if (this.db.open) this.db.pragma('wal_autocheckpoint = 1000');
  }
}
