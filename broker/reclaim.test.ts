// Giving disk space back: the policy (only once most of the file is free, and enough of it to
// matter), then a real database file that fills, empties and shrinks again. Giving memory back:
// when to collect, the hook once a burst is over, and the C library's free pages really released.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { openDatabase } from '../lib/db.js';
import { createLogger } from '../lib/log.js';
import { MemoryTrim, exposeCollector, shouldCollect } from './memory.js';
import { nativeHeapTrimmer } from './native-heap.js';
import { SpaceReclaimer, shouldReclaim } from './reclaim.js';

const dir = mkdtempSync(join(tmpdir(), 'reclaim-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;

describe('reclaiming disk space', () => {
  const policy = { minFreeBytes: 8 * MiB, minFreeShare: 0.5 };
  it('waits until most of the file is free, and enough of it to matter', () => {
    const page = 4096;
    assert.equal(shouldReclaim({ pageSize: page, pageCount: 10_000, freePages: 6_000 }, policy), true);
    assert.equal(shouldReclaim({ pageSize: page, pageCount: 10_000, freePages: 4_000 }, policy), false, 'a drain under way: live pages would have to move');
    assert.equal(shouldReclaim({ pageSize: page, pageCount: 1_000, freePages: 900 }, policy), false, 'under 8 MiB: not worth it');
    assert.equal(shouldReclaim({ pageSize: page, pageCount: 10_000, freePages: 0 }, policy), false);
  });

  it('shrinks a database file after most of its rows are deleted', () => {
    const file = join(dir, 'shrink.db');
    const db = openDatabase(file, { migrations: ['CREATE TABLE q (id INTEGER PRIMARY KEY, body BLOB)'], shrinkable: { walBytes: 4 * MiB } });
    const put = db.prepare('INSERT INTO q (body) VALUES (?)');
    db.transaction(() => {
      for (let i = 0; i < 40_000; i++) put.run(Buffer.alloc(512, i % 251));
    })();
    db.pragma('wal_checkpoint(TRUNCATE)');
    const full = statSync(file).size;
    db.prepare('DELETE FROM q WHERE id > 100').run();
    const reclaimer = new SpaceReclaimer({ db, log: createLogger('reclaim-test', 'silent'), policy, budgetMs: 10_000 });
    reclaimer.tick();
    const after = statSync(file).size;
    assert.ok(full > 20 * MiB, `filled to ${full} bytes`);
    assert.ok(after < full / 10, `shrunk from ${full} to ${after} bytes`);
    assert.equal((db.prepare('SELECT count(*) AS n FROM q').get() as { n: number }).n, 100, 'the rows left are intact');
    assert.ok(reclaimer.reclaimedPages > 0);
    db.close();
  });
});

describe('trimming memory', () => {
  it('collects once external memory grew by the budget since the last collection', () => {
    assert.equal(shouldCollect(40 * MiB, 20 * MiB, 16 * MiB), true);
    assert.equal(shouldCollect(30 * MiB, 20 * MiB, 16 * MiB), false);
  });

  it('keeps collections within their share of the time', () => {
    const pace = (lastMs: number, sinceLastMs: number) => ({ lastMs, sinceLastMs, maxShare: 0.05 });
    assert.equal(shouldCollect(40 * MiB, 20 * MiB, 16 * MiB, pace(20, 100)), false, 'a 20 ms collection 100 ms ago: too soon');
    assert.equal(shouldCollect(40 * MiB, 20 * MiB, 16 * MiB, pace(20, 380)), true, '19 × 20 ms later');
    assert.equal(shouldCollect(30 * MiB, 20 * MiB, 16 * MiB, pace(20, 10_000)), false, 'under the budget, however long ago');
    assert.equal(shouldCollect(53 * MiB, 20 * MiB, 16 * MiB, pace(20, 100)), true, 'twice the budget: at once');
  });

  it('hands freed memory back once a burst is over, once per burst', () => {
    const collections: number[] = [];
    let settled = 0;
    const trim = new MemoryTrim({ budgetBytes: 16 * MiB, settleTicks: 3, maxShare: 1, collect: () => collections.push(1), settled: () => settled++ });
    trim.start();
    trim.stop(); // ticked by hand below
    const burst = Buffer.alloc(40 * MiB, 1);
    trim.tick();
    assert.equal(collections.length, 1, 'the budget was passed: collected');
    trim.tick();
    trim.tick();
    assert.equal(settled, 0, 'two quiet ticks: the burst may go on');
    trim.tick();
    assert.equal(settled, 1, 'three quiet ticks: over');
    assert.equal(collections.length, 2, 'a last collection before handing memory back');
    for (let i = 0; i < 5; i++) trim.tick();
    assert.equal(settled, 1, 'nothing more until the next burst');
    assert.equal(burst.length, 40 * MiB);
  });

  it("gives the C library's free pages back to the system", { skip: process.platform === 'linux' ? false : 'malloc_trim is glibc only' }, async () => {
    const native = nativeHeapTrimmer();
    assert.ok('trim' in native, `malloc_trim loaded (${'unavailable' in native ? native.unavailable : ''})`);
    const collect = exposeCollector();
    collect();
    native.trim();
    // 64 MiB in 16 KiB Buffers (each its own malloc'd block, written so it is resident), then
    // seven in eight freed: free memory in the middle of malloc's heap, which free() keeps.
    const external = () => getHeapStatistics().external_memory;
    let blocks: (Buffer | undefined)[] = Array.from({ length: 4096 }, () => Buffer.allocUnsafeSlow(16 * 1024).fill(7));
    const full = external();
    blocks = blocks.map((b, i) => (i % 8 === 7 ? b : undefined));
    collect();
    // V8 frees the Buffers' memory after the collection, on its own schedule.
    for (let i = 0; i < 100 && external() > full - 48 * MiB; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      collect();
    }
    assert.ok(external() <= full - 48 * MiB, 'the Buffers were freed');
    const before = process.memoryUsage.rss();
    assert.equal(native.trim(), true, 'malloc_trim released memory');
    const released = before - process.memoryUsage.rss();
    assert.ok(released >= 32 * MiB, `RSS went down by ${(released / MiB).toFixed(1)} MiB`);
    assert.equal(blocks.filter(Boolean).length, 512);
  });
});
