// Opening a database: the settings every store relies on, and the page cache bound the broker asks for.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openDatabase } from './db.js';

describe('openDatabase', () => {
  it('bounds the page cache when asked, and keeps the build default otherwise', () => {
    const bounded = openDatabase(':memory:', { migrations: [], cacheBytes: 4 * 1024 * 1024 });
    const plain = openDatabase(':memory:', { migrations: ['CREATE TABLE t (x)'] });
    try {
      assert.equal(bounded.pragma('cache_size', { simple: true }), -4096, '4 MiB, in KiB');
      assert.equal(plain.pragma('cache_size', { simple: true }), -16000, "better-sqlite3's 16 MB");
      assert.equal(plain.pragma('user_version', { simple: true }), 1, 'migrated');
      assert.equal(plain.pragma('foreign_keys', { simple: true }), 1);
    } finally {
      bounded.close();
      plain.close();
    }
  });
});
