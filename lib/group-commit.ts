// Group commit for a service that is its database's only writer: every transaction started in one
// turn of the event loop joins one SQLite transaction, committed at the end of the turn. A commit
// writes each page it changed to the write-ahead log, a system call or two per page; the orders
// accepted in one turn share their pages (the outbox's, the indexes') and pay for one commit.
//
// Nothing may leave the process as done before its commit: an HTTP answer goes out only after it
// (answerAfterCommit), a consumer acknowledges a message only after it (lib/mqtt.ts), and the outbox
// relay never reads rows of a turn still open (lib/outbox.ts). A transaction that throws is rolled
// back alone (better-sqlite3 runs it as a savepoint inside the turn's transaction).
import type { DB } from './db.js';
import { problem } from './http.js';

interface Turn {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const turns = new WeakMap<DB, () => Turn | undefined>();

/** Makes `db.transaction(fn)` join the turn's transaction (opening it, and scheduling its commit, if none is open). */
export function groupCommit(db: DB): void {
  if (turns.has(db)) return;
  let turn: Turn | undefined;
  const commit = () => {
    const t = turn!;
    turn = undefined;
    try {
      db.exec('COMMIT');
    } catch (err) {
      if (db.inTransaction) db.exec('ROLLBACK');
      t.reject(err);
      return;
    }
    t.resolve();
  };
  const open = () => {
    if (db.inTransaction) return;
    db.exec('BEGIN');
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Nobody may be waiting (a relay's bookkeeping): a failed commit is reported to those who are.
    promise.catch(() => {});
    turn = { promise, resolve, reject };
    setImmediate(commit);
  };
  const transaction = db.transaction.bind(db);
  db.transaction = ((fn: Parameters<DB['transaction']>[0]) => {
    const tx = transaction(fn);
    const joined = ((...args: unknown[]) => {
      open();
      return (tx as (...a: unknown[]) => unknown)(...args);
    }) as typeof tx;
    return Object.assign(joined, { deferred: joined, immediate: joined, exclusive: joined });
  }) as DB['transaction'];
  turns.set(db, () => turn);
}

/** Resolves once what was written so far is committed (at once when nothing is pending). */
export function committed(db: DB): Promise<void> {
  return turns.get(db)?.()?.promise ?? Promise.resolve();
}

/** Whether `db` has a turn's transaction open: rows written in it are not durable yet. */
export const uncommitted = (db: DB): boolean => turns.get(db)?.() !== undefined;

type Fetch = (req: Request, ...rest: never[]) => Response | Promise<Response>;

/** An app whose answers wait for the commit of what they wrote (a 503 problem if it failed). */
export function answerAfterCommit<A extends { fetch: Fetch }>(app: A, db: DB): { fetch: Fetch } {
  return {
    async fetch(req, ...rest) {
      const res = await app.fetch(req, ...rest);
      try {
        await committed(db);
      } catch {
        return problem(503, 'Service Unavailable', 'the change could not be stored; try again');
      }
      return res;
    },
  };
}
