// Consumers hold several messages at once (lib/mqtt.ts consume) and still acknowledge each only
// once its effect is durable: a handler still running keeps its message in flight at the broker;
// `apply` effects of the messages in hand commit together, a failing one alone rolled back and
// dead-lettered; a message delivered twice is applied once; a consumer stopped without acknowledging
// gets nothing lost, since the broker hands its messages on.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { Registry } from 'prom-client';
import { openDatabase } from '../lib/db.js';
import { createLogger } from '../lib/log.js';
import { PermanentFailure, closeMqtt, connectMqtt, consume, subscribe, type MqttClient } from '../lib/mqtt.js';
import { parseShareGauge } from '../workers/backlog.js';
import { startBroker, type RunningBroker } from '../harness/broker.js';
import { eventually } from '../harness/process.js';
import { connectClient } from '../harness/mqtt.js';

const log = createLogger('concurrency-test', 'silent');
const dir = mkdtempSync(join(tmpdir(), 'consume-concurrency-'));

describe('consumers with several messages in hand', () => {
  let broker: RunningBroker;
  const clients: MqttClient[] = [];
  before(async () => {
    broker = await startBroker({ env: { BROKER_INFLIGHT_WINDOW: '16', BROKER_REDISPATCH_GRACE_MS: '100' } });
  });
  after(async () => {
    await Promise.all(clients.map((c) => closeMqtt(c, 500)));
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const inflight = async (share: string) => parseShareGauge(await (await fetch(`${broker.httpUrl}/metrics`)).text(), 'mqtt_shared_inflight').get(share) ?? 0;
  const connect = (id: string) => {
    const client = connectMqtt({ url: broker.mqttUrl, clientId: id, log });
    const publisher = connectMqtt({ url: broker.mqttUrl, clientId: `${id}-pub`, clean: true, log });
    clients.push(client, publisher);
    return { client, publisher };
  };
  const publishAll = async (topic: string, payloads: string[]) => {
    const producer = await mqtt.connectAsync(broker.mqttUrl, { clientId: `producer-${topic.split('/').pop()}` });
    clients.push(producer);
    await Promise.all(payloads.map((p) => producer.publishAsync(topic, p, { qos: 1 })));
  };

  it('runs up to `concurrency` handlers at once and acknowledges each when it is done', async () => {
    const topic = 'woodytoys/test/concurrency/handle';
    const share = `$share/handlers/${topic}`;
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const started: string[] = [];
    const finished: string[] = [];
    const registry = new Registry();
    const { client, publisher } = connect('concurrency-handle');
    consume(client, {
      consumer: 'concurrency-test',
      publisher,
      source: '/test',
      log,
      concurrency: 4,
      registry,
      routes: [
        {
          filter: topic,
          async handle(_t, payload) {
            started.push(payload.toString());
            await gate;
            finished.push(payload.toString());
          },
        },
      ],
    });
    subscribe(client, [share], log);
    await eventually(() => client.connected, { what: 'the consumer' });
    await eventually(async () => (await fetch(`${broker.httpUrl}/metrics`)).text().then((t) => t.includes(share)), { what: 'the group' });
    await publishAll(topic, ['a', 'b', 'c', 'd', 'e', 'f']);
    await eventually(() => started.length === 4, { what: 'four handlers running' });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(started.length, 4, 'no more than the concurrency at once');
    assert.ok((await inflight(share)) >= 4, 'none of them acknowledged while running');
    assert.match(await registry.metrics(), /mqtt_consumer_in_hand\{consumer="concurrency-test"\} 4/);
    open();
    await eventually(() => finished.length === 6, { what: 'every message handled' });
    await eventually(async () => (await inflight(share)) === 0, { what: 'every message acknowledged' });
    assert.deepEqual([...started].sort(), ['a', 'b', 'c', 'd', 'e', 'f']);
  });

  it('commits the effects of the messages in hand together, applies a duplicate once, and dead-letters a failing one alone', async () => {
    const topic = 'woodytoys/test/concurrency/apply';
    const share = `$share/appliers/${topic}`;
    const db = openDatabase(join(dir, 'apply.db'), { migrations: ['CREATE TABLE seen (id TEXT PRIMARY KEY, n INTEGER NOT NULL)'] });
    const registry = new Registry();
    const { client, publisher } = connect('concurrency-apply');
    const deadLetters: string[] = [];
    const watcher = await mqtt.connectAsync(broker.mqttUrl, { clientId: 'dead-letter-watcher' });
    clients.push(watcher);
    watcher.on('message', (_t, p) => deadLetters.push(JSON.parse(p.toString()).data.payload as string));
    await watcher.subscribeAsync('woodytoys/deadletter/concurrency-apply', { qos: 1 });
    consume(client, {
      consumer: 'concurrency-apply',
      publisher,
      source: '/test',
      log,
      concurrency: 16,
      db,
      registry,
      routes: [
        {
          filter: topic,
          apply(_t, payload) {
            const id = payload.toString();
            // Idempotent on the message's id, as every consumer is.
            db.prepare('INSERT INTO seen (id, n) VALUES (?, 1) ON CONFLICT (id) DO NOTHING').run(id);
            // Written, then refused: the savepoint takes the write back.
            if (id === 'poison') throw new PermanentFailure('poison');
          },
        },
      ],
    });
    subscribe(client, [share], log);
    await eventually(() => client.connected, { what: 'the consumer' });
    await eventually(async () => (await fetch(`${broker.httpUrl}/metrics`)).text().then((t) => t.includes(share)), { what: 'the group' });
    const ids = Array.from({ length: 40 }, (_, i) => `m${i}`);
    await publishAll(topic, [...ids, 'm3', 'poison', 'm7']);
    await eventually(() => (db.prepare('SELECT count(*) AS n FROM seen').get() as { n: number }).n === 40 && deadLetters.length === 1, { what: 'every message applied' });
    await eventually(async () => (await inflight(share)) === 0, { what: 'every message acknowledged' });
    assert.deepEqual(deadLetters, ['poison']);
    assert.equal((db.prepare("SELECT count(*) AS n FROM seen WHERE id = 'poison'").get() as { n: number }).n, 0, 'the poison message left nothing behind');
    const batches = /mqtt_consumer_commit_messages_count\{consumer="concurrency-apply"\} (\d+)/.exec(await registry.metrics());
    assert.ok(Number(batches?.[1]) < 43, `43 messages committed in ${batches?.[1]} transactions`);
    db.close();
  });

  it('a handler whose publish lost its connection runs again: nothing dead-lettered, each outcome published once', async () => {
    const topic = 'woodytoys/test/concurrency/relay';
    const share = `$share/relays/${topic}`;
    const { client, publisher } = connect('concurrency-relay');
    const deadLetters: string[] = [];
    const relayed: string[] = [];
    const watcher = await mqtt.connectAsync(broker.mqttUrl, { clientId: 'relay-watcher' });
    clients.push(watcher);
    watcher.on('message', (t, p) => (t.startsWith('woodytoys/deadletter/') ? deadLetters : relayed).push(p.toString()));
    await watcher.subscribeAsync(['woodytoys/deadletter/concurrency-relay', `${topic}/out`], { qos: 1 });
    const runs = new Map<string, number>();
    consume(client, {
      consumer: 'concurrency-relay',
      publisher,
      source: '/test',
      log,
      concurrency: 4,
      routes: [
        {
          filter: topic,
          async handle(_t, payload) {
            const id = payload.toString();
            runs.set(id, (runs.get(id) ?? 0) + 1);
            // What mqtt.js answers when the connection drops again while it resends what it had
            // stored (a broker node stopping under load): not to be produced on purpose, so the
            // first run of 'cut' fails as that publish would.
            if (id === 'cut' && runs.get(id) === 1) throw new Error('Connection closed');
            await publisher.publishAsync(`${topic}/out`, id, { qos: 1 });
          },
        },
      ],
    });
    subscribe(client, [share], log);
    await eventually(() => client.connected && publisher.connected, { what: 'the consumer' });
    await eventually(async () => (await fetch(`${broker.httpUrl}/metrics`)).text().then((t) => t.includes(share)), { what: 'the group' });
    await publishAll(topic, ['before', 'cut', 'after']);
    await eventually(() => relayed.includes('cut') && relayed.includes('before') && relayed.includes('after'), { what: 'every outcome published' });
    await eventually(async () => (await inflight(share)) === 0, { what: 'every message acknowledged' });
    assert.equal(runs.get('cut'), 2, 'the handler ran again');
    assert.deepEqual(relayed.sort(), ['after', 'before', 'cut']);
    assert.deepEqual(deadLetters, []);
  });

  it('announces a parking only once its dead letter is out, and tries a failed announcement again without a second dead letter', async () => {
    const topic = 'woodytoys/test/concurrency/park';
    const share = `$share/parkers/${topic}`;
    const { client, publisher } = connect('concurrency-park');
    const deadLetters: string[] = [];
    const watcher = await connectClient(broker.mqttUrl, { clientId: 'park-watcher', protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(watcher);
    watcher.on('message', (_t, p) => deadLetters.push(JSON.parse(p.toString()).data.payload as string));
    await watcher.subscribeAsync('woodytoys/deadletter/concurrency-park', { qos: 1 });
    let runs = 0;
    let tries = 0;
    const seenBeforeAnnouncing: number[] = [];
    consume(client, {
      consumer: 'concurrency-park',
      publisher,
      source: '/test',
      log,
      concurrency: 4,
      routes: [
        {
          filter: topic,
          async handle() {
            runs++;
            throw new PermanentFailure('gave up', 3, async () => {
              // The dead letter is out (the watcher gets it) before the announcement runs; the first
              // announcement fails, as a publish on a dropped connection would.
              await eventually(() => deadLetters.length > 0, { timeoutMs: 5000, what: 'the dead letter before its announcement' });
              seenBeforeAnnouncing.push(deadLetters.length);
              if (++tries === 1) throw new Error('Connection closed');
            });
          },
        },
      ],
    });
    subscribe(client, [share], log);
    await eventually(() => client.connected && publisher.connected, { what: 'the consumer' });
    await eventually(async () => (await fetch(`${broker.httpUrl}/metrics`)).text().then((t) => t.includes(share)), { what: 'the group' });
    await publishAll(topic, ['stuck']);
    await eventually(() => tries === 2, { what: 'the announcement tried again' });
    await eventually(async () => (await inflight(share)) === 0, { what: 'the message acknowledged' });
    assert.equal(runs, 1, 'the handler ran once');
    assert.deepEqual(seenBeforeAnnouncing, [1, 1], 'each announcement after the one dead letter');
    assert.deepEqual(deadLetters, ['stuck'], 'one dead letter for the one parking');
  });

  it('gives a payload that is not an event the same dead letter each time it comes, and an event a letter per failure', async () => {
    const topic = 'woodytoys/test/concurrency/letters';
    const share = `$share/letters/${topic}`;
    const { client, publisher } = connect('concurrency-letters');
    const letters: Array<{ id: string; payload: string }> = [];
    const watcher = await connectClient(broker.mqttUrl, { clientId: 'letters-watcher', protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(watcher);
    watcher.on('message', (_t, p) => {
      const event = JSON.parse(p.toString()) as { id: string; data: { payload: string } };
      letters.push({ id: event.id, payload: event.data.payload });
    });
    await watcher.subscribeAsync('woodytoys/deadletter/concurrency-letters', { qos: 1 });
    consume(client, {
      consumer: 'concurrency-letters',
      publisher,
      source: '/test',
      log,
      concurrency: 4,
      routes: [{ filter: topic, handle: () => Promise.reject(new PermanentFailure('refused')) }],
    });
    subscribe(client, [share], log);
    await eventually(() => client.connected && publisher.connected, { what: 'the consumer' });
    await eventually(async () => (await fetch(`${broker.httpUrl}/metrics`)).text().then((t) => t.includes(share)), { what: 'the group' });
    // As if the broker had lost the acknowledgements and delivered each message once more.
    const garbage = '{"not": "an event"';
    const event = JSON.stringify({ id: 'letters-1', type: 'test' });
    await publishAll(topic, [garbage, event]);
    await eventually(() => letters.length === 2, { what: 'the first two letters' });
    await publishAll(topic, [garbage, event]);
    await eventually(() => letters.length === 4, { what: 'the second two letters' });
    const idsOf = (payload: string) => letters.filter((l) => l.payload === payload).map((l) => l.id);
    assert.equal(new Set(idsOf(garbage)).size, 1, 'one letter id for the same bytes: the store keeps it once');
    assert.equal(new Set(idsOf(event)).size, 2, 'an event failing again (a replay, say) gets a letter of its own');
  });

  it('a consumer that goes away mid-handling loses nothing: its messages go to another member', async () => {
    const topic = 'woodytoys/test/concurrency/handover';
    const share = `$share/handover/${topic}`;
    const first = connect('concurrency-first');
    const started: string[] = [];
    consume(first.client, {
      consumer: 'concurrency-test',
      publisher: first.publisher,
      source: '/test',
      log,
      concurrency: 8,
      routes: [{ filter: topic, handle: (_t, p) => new Promise<void>(() => started.push(p.toString())) }],
    });
    subscribe(first.client, [share], log);
    await eventually(() => first.client.connected, { what: 'the first consumer' });
    await eventually(async () => (await fetch(`${broker.httpUrl}/metrics`)).text().then((t) => t.includes(share)), { what: 'the group' });
    const sent = Array.from({ length: 8 }, (_, i) => `h${i}`);
    await publishAll(topic, sent);
    await eventually(() => started.length === 8, { what: 'eight in hand' });
    first.client.stream.destroy(); // the process dies: nothing acknowledged
    first.client.end(true);
    const second = connect('concurrency-second');
    const handled: string[] = [];
    consume(second.client, {
      consumer: 'concurrency-test',
      publisher: second.publisher,
      source: '/test',
      log,
      concurrency: 8,
      routes: [{ filter: topic, handle: async (_t, p) => void handled.push(p.toString()) }],
    });
    subscribe(second.client, [share], log);
    await eventually(() => handled.length >= 8, { timeoutMs: 15_000, what: 'the messages handed to the second consumer' });
    assert.deepEqual([...new Set(handled)].sort(), sent);
  });
});
