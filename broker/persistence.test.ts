// The SQLite persistence against aedes-persistence's own abstract test suite (the contract Aedes
// relies on), plus what the memory implementation cannot do: state survives reopening the file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../lib/db.js';
import { CommitQueue } from './commit-queue.js';
import { SqlitePersistence } from './persistence.js';
import { migrations } from './schema.js';

const dir = mkdtempSync(join(tmpdir(), 'broker-persistence-'));
let n = 0;
const open = (file = join(dir, `p${n++}.db`)) => {
  const db = openDatabase(file, { migrations });
  const commits = new CommitQueue(db, (err) => {
    throw err;
  });
  return { db, persistence: new SqlitePersistence(db, commits) };
};

const require = createRequire(import.meta.url);
const abstractPersistence = require('aedes-persistence/abstract.js') as (opts: object) => void;
abstractPersistence({ test, persistence: () => open().persistence, testAsync: true });

test('subscriptions, queued messages, wills and retained messages survive reopening the database', async () => {
  const file = join(dir, 'reopen.db');
  const first = open(file);
  await first.persistence.setup({ id: 'b1' });
  await first.persistence.addSubscriptions({ id: 'c1' }, [{ topic: 'woodytoys/#', qos: 1 }]);
  await first.persistence.storeRetained({ topic: 'woodytoys/stock/levels/x', payload: Buffer.from('7'), qos: 1, retain: true });
  await first.persistence.outgoingEnqueueCombi([{ clientId: 'c1' }], { cmd: 'publish', topic: 'woodytoys/a', payload: Buffer.from('m'), qos: 1, brokerId: 'b1', brokerCounter: 1 });
  await first.persistence.putWill({ id: 'c1' }, { topic: 'woodytoys/will', payload: Buffer.from('bye'), qos: 1, retain: false });
  await first.persistence.destroy();
  first.db.close();

  const second = open(file);
  await second.persistence.setup({ id: 'b2' });
  assert.deepEqual(await second.persistence.subscriptionsByClient({ id: 'c1' }), [{ topic: 'woodytoys/#', qos: 1 }]);
  const queued = await second.persistence.outgoingStream({ id: 'c1' }).toArray();
  assert.equal(queued.length, 1);
  assert.equal(queued[0].payload.toString(), 'm');
  const retained = await second.persistence.createRetainedStream('woodytoys/stock/#').toArray();
  assert.equal(retained[0].payload.toString(), '7');
  assert.equal((await second.persistence.getWill({ id: 'c1' }))?.topic, 'woodytoys/will');
  second.db.close();
});

test("a bounded session's queue: full at its bound, its client away or connected, and a message not kept for it is still delivered live", async () => {
  const { db, persistence } = open();
  await persistence.setup({ id: 'b1' });
  const dropped: string[] = [];
  persistence.queueLimit = (clientId) => (clientId.startsWith('viewer-') ? 2 : Infinity);
  persistence.onQueueFull = (clientId) => dropped.push(clientId);
  const packet = (n: number) => ({ cmd: 'publish' as const, topic: 'woodytoys/public/x', payload: Buffer.from(String(n)), qos: 1 as const, retain: false, brokerId: 'b1', brokerCounter: n });
  for (let n = 1; n <= 3; n++) await persistence.outgoingEnqueueCombi([{ clientId: 'viewer-1' }, { clientId: 'orders-1' }], packet(n));
  const held = async (id: string) => (await persistence.outgoingStream({ id }).toArray()).map((p: { payload: Buffer }) => p.payload.toString());
  assert.deepEqual(await held('viewer-1'), ['1', '2'], 'the bounded session kept its two oldest');
  assert.deepEqual(await held('orders-1'), ['1', '2', '3'], 'the unbounded one kept all');
  assert.deepEqual(dropped, ['viewer-1']);
  // Its client is connected: Aedes hands message 3 over live, with a packet identifier, kept or not.
  await persistence.outgoingUpdate({ id: 'viewer-1' }, { ...packet(3), messageId: 7 });
  await assert.rejects(persistence.outgoingUpdate({ id: 'orders-1' }, { ...packet(4), messageId: 8 }), /no such packet/, 'an unbounded session has no such case');
  // Once it acknowledges one, there is room for one more.
  await persistence.outgoingUpdate({ id: 'viewer-1' }, { ...packet(1), messageId: 5 });
  await persistence.outgoingClearMessageId({ id: 'viewer-1' }, { ...packet(1), messageId: 5 });
  await persistence.outgoingEnqueueCombi([{ clientId: 'viewer-1' }], packet(5));
  await persistence.outgoingEnqueueCombi([{ clientId: 'viewer-1' }], packet(6));
  assert.deepEqual(await held('viewer-1'), ['2', '5']);
  assert.deepEqual(dropped, ['viewer-1', 'viewer-1']);
  await persistence.destroy();
  db.close();
});

test("an ended session is gone, from memory and from the file: its subscriptions, queue and QoS 2 state; another client's stays", async () => {
  const file = join(dir, 'ended.db');
  const first = open(file);
  await first.persistence.setup({ id: 'b1' });
  for (const id of ['viewer-a', 'viewer-b']) {
    await first.persistence.addSubscriptions({ id }, [{ topic: 'woodytoys/public/#', qos: 1 }]);
    await first.persistence.incomingStorePacket({ id }, { cmd: 'publish', topic: 'woodytoys/public/q', payload: Buffer.from('2'), qos: 2, messageId: 5 });
  }
  await first.persistence.outgoingEnqueueCombi([{ clientId: 'viewer-a' }, { clientId: 'viewer-b' }], { cmd: 'publish', topic: 'woodytoys/public/x', payload: Buffer.from('m'), qos: 1, brokerId: 'b1', brokerCounter: 1 });
  assert.deepEqual([...first.persistence.sessionClientIds()], ['viewer-a', 'viewer-b']);
  first.persistence.endSession('viewer-a');
  const gone = async (p: SqlitePersistence) => {
    assert.equal(p.holdsSession('viewer-a'), false);
    assert.deepEqual(await p.subscriptionsByClient({ id: 'viewer-a' }), []);
    assert.deepEqual(await p.outgoingStream({ id: 'viewer-a' }).toArray(), []);
    await assert.rejects(p.incomingGetPacket({ id: 'viewer-a' }, { cmd: 'publish', topic: 'woodytoys/public/q', qos: 2, messageId: 5 }), /no such packet/);
    assert.deepEqual((await p.subscriptionsByTopic('woodytoys/public/x')).map((s) => s.clientId), ['viewer-b'], 'a publish no longer reaches it');
    assert.equal((await p.outgoingStream({ id: 'viewer-b' }).toArray()).length, 1);
    assert.equal((await p.incomingGetPacket({ id: 'viewer-b' }, { cmd: 'publish', topic: 'woodytoys/public/q', qos: 2, messageId: 5 })).payload?.toString(), '2');
  };
  await gone(first.persistence);
  await first.persistence.destroy();
  first.db.close();
  const second = open(file);
  await second.persistence.setup({ id: 'b2' });
  await gone(second.persistence);
  assert.deepEqual([...second.persistence.sessionClientIds()], ['viewer-b']);
  // Unsubscribed from everything, with messages still queued (sent, unacknowledged): still a session, ended whole.
  await second.persistence.removeSubscriptions({ id: 'viewer-b' }, ['woodytoys/public/#']);
  assert.equal(second.persistence.holdsSession('viewer-b'), true);
  assert.deepEqual([...second.persistence.sessionClientIds()], ['viewer-b']);
  second.persistence.endSession('viewer-b');
  assert.equal(second.persistence.holdsSession('viewer-b'), false);
  assert.deepEqual([...second.persistence.sessionClientIds()], []);
  await second.persistence.destroy();
  second.db.close();
});

test('matches persistent subscriptions as MQTT does (a trie now, not a scan): wildcards, empty levels, $ topics, QoS 0 never queued, changes and removals', async () => {
  const { db, persistence } = open();
  await persistence.setup({ id: 'b1' });
  await persistence.addSubscriptions({ id: 'a' }, [
    { topic: '#', qos: 1 },
    { topic: 'x/+/z', qos: 1 },
    { topic: 'x/#', qos: 1 },
  ]);
  await persistence.addSubscriptions({ id: 'b' }, [
    { topic: 'x/y/z', qos: 0 },
    { topic: 'x/y/+', qos: 1 },
  ]);
  // Every change clears the per-topic cache: each answer below is the trie's.
  const who = async (topic: string) => (await persistence.subscriptionsByTopic(topic)).map((s) => `${s.clientId} ${s.topic}`).sort();
  assert.deepEqual(await who('x/y/z'), ['a #', 'a x/#', 'a x/+/z', 'b x/y/+'], 'QoS 0 is never queued');
  assert.deepEqual(await who('x//z'), ['a #', 'a x/#', 'a x/+/z'], '+ matches an empty level');
  assert.deepEqual(await who('x'), ['a #', 'a x/#'], 'x/# matches its parent level');
  assert.deepEqual(await who('$SYS/x'), [], 'no filter starting with a wildcard matches a $ topic');
  assert.equal((await persistence.subscriptionsByTopic('x/y/w'))[0]!.topic, '#', 'multi-level wildcards first');
  await persistence.addSubscriptions({ id: 'b' }, [{ topic: 'x/y/+', qos: 0 }]);
  await persistence.removeSubscriptions({ id: 'a' }, ['x/+/z']);
  assert.deepEqual(await who('x/y/z'), ['a #', 'a x/#'], 'down to QoS 0, or removed: not matched');
  await persistence.cleanSubscriptions({ id: 'a' });
  assert.deepEqual(await who('x/y/z'), []);
  assert.equal(persistence.hasSessionSubscriber('x/q'), false);
  await persistence.destroy();
  db.close();
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
