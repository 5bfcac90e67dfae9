// The group queue's dispatch passes against the real SQLite group store, in one process: what a
// member at QoS 0 is sent out of a stored backlog. Such a member frees its window as each message
// is written, so pass, read from the store and pass again could send the whole backlog without the
// event loop turning once (every other connection, timer and commit waiting), had the pass after a
// read run at once rather than at the next turn. The broker is a real Aedes and the session store
// real; the member's connection is stood in for by what it was written.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import { openDatabase } from '../lib/db.js';
import { createLogger } from '../lib/log.js';
import { eventually } from '../harness/process.js';
import { CommitQueue } from './commit-queue.js';
import { SharedSubscriptions } from './group-queue.js';
import { SqlitePersistence } from './persistence.js';
import { encodePublish } from './publish-packet.js';
import { migrations } from './schema.js';
import { SqliteGroupStore } from './sqlite-group-store.js';

const dir = mkdtempSync(join(tmpdir(), 'group-queue-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('group queue dispatch', () => {
  it('sends a QoS 0 member a stored backlog a window per turn of the event loop, all of it in order', async () => {
    const db = openDatabase(join(dir, 'g.db'), { migrations });
    const commits = new CommitQueue(db, (err) => {
      throw err;
    });
    const store = new SqliteGroupStore(db, commits);
    const share = '$share/g/woodytoys/stock/movements';
    const STORED = 5000;
    const MEMORY = 500;
    store.open(share);
    const { durable } = store.append(Array.from({ length: STORED }, (_, i) => ({ share, packet: encodePublish('woodytoys/stock/movements', Buffer.from(String(i)), 1) })));
    await durable;
    // The member's subscription, kept by the session store as from an earlier connection.
    const persistence = new SqlitePersistence(db, commits);
    await persistence.addSubscriptions({ id: 'member' }, [{ topic: share, qos: 0 }]);
    const shared = new SharedSubscriptions({ store, persistence, log: createLogger('test', 'silent'), window: 100, graceMs: 1000, memory: { messages: MEMORY, bytes: 1 << 24 } });
    const broker = await Aedes.createBroker();
    shared.start(broker);
    const written: Buffer[] = [];
    let count = 0;
    const countWrites = () => {
      // Each write is whole PUBLISH packets (QoS 0: 0x30, remaining length, topic, payload).
      count = 0;
      for (const b of written) for (let o = 0; o < b.length; o += 2 + b[o + 1]!) count++;
    };
    const member = {
      id: 'member',
      clean: false,
      connected: true,
      closed: false,
      _nextId: 1,
      conn: {
        write: (b: Buffer) => {
          written.push(Buffer.from(b));
          countWrites();
          return true;
        },
      },
    };
    /** Messages written when each turn of the event loop began. */
    const atTurns: number[] = [];
    const turn = () => {
      atTurns.push(count);
      if (count < STORED) setImmediate(turn);
    };
    setImmediate(turn);
    // As Aedes announces a connection it has registered (its own handlers are not listening to this one).
    broker.emit('clientReady', member);
    await eventually(() => count === STORED, { what: 'the whole backlog written', intervalMs: 5 });
    // In order, each once, at QoS 0.
    const payloads: string[] = [];
    for (const b of written) {
      for (let o = 0; o < b.length; o += 2 + b[o + 1]!) {
        assert.equal(b[o], 0x30, 'a QoS 0 PUBLISH');
        const topicLength = b.readUInt16BE(o + 2);
        payloads.push(b.subarray(o + 4 + topicLength, o + 2 + b[o + 1]!).toString());
      }
    }
    assert.deepEqual(payloads, Array.from({ length: STORED }, (_, i) => String(i)));
    // Never more than a window read from the store between two turns (with the pass after a read
    // run at once, all 5,000 went out before the first turn).
    assert.ok(atTurns.length >= STORED / MEMORY, `${atTurns.length} turns began while ${STORED} messages were written (written by then: ${atTurns.join(', ')})`);
    const steps = atTurns.map((n, i) => n - (atTurns[i - 1] ?? 0));
    assert.ok(Math.max(...steps) <= MEMORY, `messages written per turn: ${steps.join(', ')}`);
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    db.close();
  });
});
