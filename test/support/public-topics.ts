// The check both the catalog and the stock service need for their public topics: a database from
// before the public namespace (rows stored, nothing queued on the public topics, no mark) announces
// each row once when it opens, and not again the next time.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DB } from '../../lib/db.js';

interface Store {
  db: DB;
  close(): void;
}

export interface AnnouncedOnce<S extends Store> {
  /** Opens the service's store on a database file. */
  open: (file: string) => S;
  /** The public topics, as a LIKE pattern (e.g. productTopic('%')). */
  topics: string;
  /** How many rows the seed announces. */
  seeded: number;
  /** The service's meta table, whose `public-topics` key marks the announcement as done. */
  metaTable: string;
}

export function assertAnnouncedOnce<S extends Store>({ open, topics, seeded, metaTable }: AnnouncedOnce<S>): void {
  const dir = mkdtempSync(join(tmpdir(), 'public-topics-'));
  const queued = (store: S) => store.db.prepare<[pattern: string], { n: number }>('SELECT count(*) AS n FROM outbox WHERE topic LIKE ?').get(topics)!.n;
  try {
    const file = join(dir, 'store.db');
    const fresh = open(file);
    assert.equal(queued(fresh), seeded, 'a new database: the seed announces each row once');
    // As it was before: rows stored, nothing queued on the public topics, no mark.
    fresh.db.exec(`DELETE FROM outbox; DELETE FROM ${metaTable} WHERE key = 'public-topics'`);
    fresh.close();
    const upgraded = open(file);
    assert.equal(queued(upgraded), seeded);
    upgraded.close();
    const again = open(file);
    assert.equal(queued(again), seeded, 'only once');
    again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
