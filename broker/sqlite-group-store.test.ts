// The SQLite group store on a real database file: entries come back in order a window at a time,
// acknowledged ones are gone, counts are kept without reading entries (and survive reopening),
// and queues written by the first schema move over to the second with their messages.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate, openDatabase } from '../lib/db.js';
import { CommitQueue } from './commit-queue.js';
import { migrations } from './schema.js';
import { SqliteGroupStore, runsOf } from './sqlite-group-store.js';
import { encodePublish, qosOf } from './publish-packet.js';

const dir = mkdtempSync(join(tmpdir(), 'group-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function open(file = join(dir, `g${n++}.db`)) {
  const db = openDatabase(file, { migrations });
  const commits = new CommitQueue(db, (err) => {
    throw err;
  });
  return { db, commits, store: new SqliteGroupStore(db, commits), file };
}

const packet = (text: string) => encodePublish('woodytoys/stock/movements', Buffer.from(text), 1);
const payloadOf = (p: Buffer) => p.subarray(p.length - 2).toString();

describe('SQLite group store', () => {
  it('hands entries back in order, a window at a time, and forgets acknowledged ones', async () => {
    const { store, commits } = open();
    assert.equal(store.open('$share/g/t'), 0);
    const { stored: appended, durable } = store.append(Array.from({ length: 10 }, (_, i) => ({ share: '$share/g/t', packet: packet(`m${i}`) })));
    await durable;
    assert.deepEqual(appended.map((e) => e.id), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const first = await store.read('$share/g/t', undefined, 4);
    assert.deepEqual(first.map((e) => payloadOf(e.packet)), ['m0', 'm1', 'm2', 'm3']);
    const next = await store.read('$share/g/t', first.at(-1)!.id, 4);
    assert.deepEqual(next.map((e) => payloadOf(e.packet)), ['m4', 'm5', 'm6', 'm7']);
    store.ack('$share/g/t', [1, 2, 3, 5]);
    commits.flush();
    const left = await store.read('$share/g/t', undefined, 100);
    assert.deepEqual(left.map((e) => e.id), [4, 6, 7, 8, 9, 10]);
    assert.equal(store.groups().get('$share/g/t'), 6, 'the count follows appends and acknowledgements');
  });

  it('keeps each group apart and drops a group with its entries', async () => {
    const { store, commits } = open();
    await store.append([
      { share: '$share/a/t', packet: packet('a0') },
      { share: '$share/b/t', packet: packet('b0') },
      { share: '$share/a/t', packet: packet('a1') },
    ]).durable;
    assert.deepEqual((await store.read('$share/b/t', undefined, 10)).map((e) => payloadOf(e.packet)), ['b0']);
    store.drop('$share/a/t');
    commits.flush();
    assert.deepEqual([...store.groups()], [['$share/b/t', 1]]);
    assert.deepEqual(await store.read('$share/a/t', undefined, 10), []);
  });

  it('counts survive reopening, and new ids continue after the last one', async () => {
    const file = join(dir, 'reopen.db');
    const first = open(file);
    await first.store.append(Array.from({ length: 5 }, (_, i) => ({ share: '$share/g/t', packet: packet(`m${i}`) }))).durable;
    first.store.ack('$share/g/t', [1]);
    first.commits.close();
    first.db.close();
    const second = open(file);
    assert.deepEqual([...second.store.groups()], [['$share/g/t', 4]]);
    const { stored: [entry], durable: written } = second.store.append([{ share: '$share/g/t', packet: packet('m5') }]);
    await written;
    assert.equal(entry!.id, 6);
  });

  it('moves the messages queued under the first schema into the new queues', async () => {
    const db = openDatabase(join(dir, 'v1.db'), { migrations: migrations.slice(0, 1) });
    const put = db.prepare('INSERT INTO shared_messages (id, share, packet, payload) VALUES (?, ?, ?, ?)');
    put.run(7, '$share/g/t', JSON.stringify({ topic: 'woodytoys/stock/movements', qos: 1 }), Buffer.from('old'));
    put.run(9, '$share/g/t', JSON.stringify({ topic: 'woodytoys/stock/movements', qos: 0 }), null);
    migrate(db, migrations);
    const commits = new CommitQueue(db, (err) => {
      throw err;
    });
    const store = new SqliteGroupStore(db, commits);
    assert.deepEqual([...store.groups()], [['$share/g/t', 2]]);
    const entries = await store.read('$share/g/t', undefined, 10);
    assert.deepEqual(entries.map((e) => e.id), [7, 9]);
    assert.equal(entries[0]!.packet.subarray(-3).toString(), 'old');
    assert.deepEqual(entries.map((e) => qosOf(e.packet)), [1, 0]);
  });

  it('deletes acknowledged ids as runs of consecutive ids', () => {
    assert.deepEqual(runsOf([1, 2, 3, 5, 6, 9]), [
      [1, 3],
      [5, 6],
      [9, 9],
    ]);
    assert.deepEqual(runsOf([4, 4, 5]), [[4, 5]]);
    assert.deepEqual(runsOf([]), []);
  });
});
