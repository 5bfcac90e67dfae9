// The ERP sandbox's system of record: each operation once, and the per-kind counts that tests and
// demos poll (kept in memory, so they must match the table through duplicates, group commit and a
// restart).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { committed, groupCommit } from '../../lib/group-commit.js';
import { ErpStore } from './store.js';

const tableCounts = (store: ErpStore) =>
  Object.fromEntries(
    store.db
      .prepare<[], { kind: string; n: number }>('SELECT kind, count(*) AS n FROM records GROUP BY kind')
      .all()
      .map((r) => [r.kind, r.n]),
  );

describe('ERP store', () => {
  it('counts each operation once per kind, only once committed, and again from the table after a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'erp-store-'));
    const file = join(dir, 'erp.db');
    try {
      const store = new ErpStore(file);
      groupCommit(store.db);
      const first = store.record('movement:1', 'stock-movement', { n: 1 });
      assert.equal(first.duplicate, false);
      assert.equal(store.record('movement:1', 'stock-movement', { n: 1 }).duplicate, true);
      store.record('order:1', 'order', { n: 1 });
      assert.deepEqual(store.countByKind(), {}, 'nothing counted before the turn commits');
      await committed(store.db);
      assert.deepEqual(store.countByKind(), { 'stock-movement': 1, order: 1 });
      assert.deepEqual(store.countByKind(), tableCounts(store));
      store.record('movement:2', 'stock-movement', {});
      await committed(store.db);
      assert.deepEqual(store.countByKind(), { 'stock-movement': 2, order: 1 });
      store.close();

      const reopened = new ErpStore(file);
      assert.deepEqual(reopened.countByKind(), { 'stock-movement': 2, order: 1 });
      assert.equal(reopened.record('movement:2', 'stock-movement', {}).duplicate, true);
      assert.deepEqual(reopened.countByKind(), tableCounts(reopened));
      reopened.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
