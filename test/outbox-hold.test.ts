// An outbox relay held until its process's own consumer has subscribed once (RelayOptions.holdUntil,
// used by the orders service): on a new broker, the answers to what it publishes need that session
// to exist first (README, "First start"). Real SQLite, the real broker.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { openDatabase, type DB } from '../lib/db.js';
import { createEvent } from '../lib/events.js';
import { createLogger } from '../lib/log.js';
import { OutboxRelay, enqueueEvent, outboxMigration } from '../lib/outbox.js';
import { orderStatus, publicOrderRef } from '../lib/topics.js';
import { startBroker, type RunningBroker } from '../harness/broker.js';
import { connectClient } from '../harness/mqtt.js';
import { eventually } from '../harness/process.js';

describe('an outbox relay held until a condition', () => {
  let broker: RunningBroker;
  let db: DB;
  const clients: MqttClient[] = [];
  before(async () => {
    broker = await startBroker();
    db = openDatabase(join(mkdtempSync(join(tmpdir(), 'outbox-hold-')), 'outbox.db'), { migrations: [outboxMigration] });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
    db?.close();
    await broker?.stop();
  });

  it('publishes nothing while held, and everything once released', async () => {
    const watcher = await connectClient(broker.mqttUrl, { clientId: 'outbox-hold-watcher', reconnectPeriod: 0 });
    const publisher = await connectClient(broker.mqttUrl, { clientId: 'outbox-hold-pub', reconnectPeriod: 0 });
    clients.push(watcher, publisher);
    const seen: string[] = [];
    watcher.on('message', (_t, payload) => seen.push((JSON.parse(payload.toString()) as { id: string }).id));
    await watcher.subscribeAsync(orderStatus.topic, { qos: 1 });

    let release!: () => void;
    const relay = new OutboxRelay({ db, client: publisher, log: createLogger('test', 'silent'), holdUntil: new Promise<void>((r) => (release = r)) });
    relay.start();
    const event = createEvent(orderStatus, { ref: publicOrderRef('f1c6a7de-58a4-4bd6-9a35-7c4e33a4b1f0'), status: 'pending', units: 1 }, { source: 'test' });
    enqueueEvent(db, orderStatus.topic, event);
    relay.wake();
    await new Promise((r) => setImmediate(r)); // the relay's turn (wake schedules it first)
    // A round trip through the broker on the same connection after the relay's turn: an event the
    // relay had sent would have reached the watcher before this marker.
    await publisher.publishAsync(orderStatus.topic, JSON.stringify({ id: 'marker' }), { qos: 1 });
    await eventually(() => seen.includes('marker') || undefined, { what: 'the marker' });
    assert.deepEqual(seen, ['marker'], 'nothing of the outbox went out while held');
    assert.equal(relay.pending(), 1);

    release();
    await eventually(() => relay.pending() === 0 || undefined, { what: 'the outbox to drain once released' });
    await eventually(() => seen.includes(event.id) || undefined, { what: 'the event at the watcher' });
    assert.deepEqual(seen, ['marker', event.id]);
    await relay.stop();
  });
});
