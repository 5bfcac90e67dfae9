// A backlog lives on disk: with its member away, a group's queue grows in SQLite while only a
// bounded window of it is in memory; a restart counts the queue without loading it; the returning
// member gets every message once, the window staying bounded as it drains; and the space the
// backlog took is given back afterwards.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { parseShareGauge } from '../workers/backlog.js';
import { startBroker, type RunningBroker } from '../harness/broker.js';
import { metricValue } from '../harness/metrics.js';
import { eventually } from '../harness/process.js';
import { connectClient } from '../harness/mqtt.js';

const SHARE = '$share/backlog/woodytoys/stock/backlog-test';
const TOPIC = 'woodytoys/stock/backlog-test';
const MESSAGES = 6000;
const PAYLOAD = 2048;
const MEMORY = 100;

async function metric(broker: RunningBroker, name: string): Promise<number> {
  const text = await (await fetch(`${broker.httpUrl}/metrics`)).text();
  if (name.startsWith('mqtt_shared')) return parseShareGauge(text, name).get(SHARE) ?? 0;
  return metricValue(text, name) ?? NaN;
}

describe('a backlog on disk', () => {
  let broker: RunningBroker;
  const env = { BROKER_QUEUE_MEMORY_MESSAGES: String(MEMORY), BROKER_INFLIGHT_WINDOW: '8' };
  const clients: MqttClient[] = [];
  before(async () => {
    broker = await startBroker({ env });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
    await broker?.stop();
  });

  it('keeps a bounded window in memory, survives a restart without loading it, drains once, and gives the space back', async () => {
    const member = await connectClient(broker.mqttUrl, { clientId: 'backlog-member', clean: false, reconnectPeriod: 0 });
    await member.subscribeAsync(SHARE, { qos: 1 });
    await member.endAsync();

    const publisher = await connectClient(broker.mqttUrl, { clientId: 'backlog-publisher', reconnectPeriod: 0 });
    clients.push(publisher);
    const body = (n: number) => {
      const b = Buffer.alloc(PAYLOAD, n % 251);
      b.writeUInt32BE(n, 0);
      return b;
    };
    for (let n = 0; n < MESSAGES; n += 500) await Promise.all(Array.from({ length: 500 }, (_, i) => publisher.publishAsync(TOPIC, body(n + i), { qos: 1 })));
    assert.equal(await metric(broker, 'mqtt_shared_queue_depth'), MESSAGES);
    assert.ok((await metric(broker, 'mqtt_shared_queue_in_memory')) <= MEMORY, 'only the window is in memory');
    const fullFile = statSync(join(broker.dataDir, 'broker.db')).size + (statSync(join(broker.dataDir, 'broker.db-wal'), { throwIfNoEntry: false })?.size ?? 0);

    // A restart counts the queue and reads none of it while nobody is there to take it.
    await broker.stop();
    broker = await startBroker({ env: { ...env, DATA_DIR: broker.dataDir } });
    assert.ok(broker.logs.some((l) => l.includes('group queues opened') && l.includes(`"messages":${MESSAGES}`)), 'the queue is counted at start');
    assert.equal(await metric(broker, 'mqtt_shared_queue_depth'), MESSAGES);
    assert.equal(await metric(broker, 'mqtt_shared_queue_in_memory'), 0, 'nothing loaded at start');

    const seen = new Map<number, number>();
    let inMemory = 0;
    const back = mqtt.connect(broker.mqttUrl, { clientId: 'backlog-member', clean: false, reconnectPeriod: 0 });
    clients.push(back);
    back.on('message', (_t, payload) => {
      const n = payload.readUInt32BE(0);
      seen.set(n, (seen.get(n) ?? 0) + 1);
    });
    await eventually(
      async () => {
        inMemory = Math.max(inMemory, await metric(broker, 'mqtt_shared_queue_in_memory'));
        return seen.size === MESSAGES;
      },
      { timeoutMs: 120_000, intervalMs: 50, what: 'every queued message' },
    );
    await eventually(async () => (await metric(broker, 'mqtt_shared_queue_depth')) === 0 && (await metric(broker, 'mqtt_shared_inflight')) === 0, { what: 'an empty queue' });
    assert.ok(inMemory <= MEMORY, `at most ${MEMORY} in memory while draining (saw ${inMemory})`);
    assert.deepEqual([...seen.values()].filter((times) => times !== 1), [], 'each message delivered once');

    // The pages the backlog took go back to the file system.
    await eventually(
      async () => {
        const size = statSync(join(broker.dataDir, 'broker.db')).size;
        return (await metric(broker, 'broker_reclaimed_bytes_total')) > 0 && size < fullFile / 2;
      },
      { timeoutMs: 30_000, what: `the database file to shrink from ${fullFile} bytes` },
    );
  });
});
