// Write-behind in the group queues (broker/group-queue.ts) and read-ahead of publishers
// (broker/ingest.ts): a message for a group with a member online goes to the member before it is
// written, and is written only if still unacknowledged after BROKER_WRITE_BEHIND_MS. The
// publisher's PUBACK waits for the member's acknowledgement or the write, PUBACKs keep the order
// of the publishes, and a publisher is read on while its PUBACKs wait.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import { formatPasswordFile } from '../broker/password-hash.js';
import { parseShareGauge } from '../workers/backlog.js';
import { startBroker, type RunningBroker } from '../harness/broker.js';
import { eventually } from '../harness/process.js';
import { READ_AHEAD } from '../broker/ingest.js';
import { connectClient } from '../harness/mqtt.js';

const TOPIC = 'woodytoys/stock/write-behind-test';
const SHARE = `$share/wb/${TOPIC}`;

const brokers: RunningBroker[] = [];
const clients: MqttClient[] = [];
after(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
  await Promise.all(brokers.map((b) => b.stop().catch(() => {})));
});

async function broker(env: Record<string, string>): Promise<RunningBroker> {
  const b = await startBroker({ env });
  brokers.push(b);
  return b;
}

async function shareMetric(b: RunningBroker, name: string): Promise<number> {
  return parseShareGauge(await (await fetch(`${b.httpUrl}/metrics`)).text(), name).get(SHARE) ?? 0;
}

/** A persistent member of the group: records what it gets; acknowledges at once, or never with `hold` (mqtt.js then takes no further message). */
async function member(b: RunningBroker, clientId: string, { hold = false } = {}): Promise<{ client: MqttClient; got: string[] }> {
  const client = mqtt.connect(b.mqttUrl, { clientId, clean: false, protocolVersion: 4, reconnectPeriod: 0 });
  clients.push(client);
  const got: string[] = [];
  // Before the CONNACK: a returning member's messages may come in the same read as it.
  client.handleMessage = (packet, done) => {
    got.push(packet.payload.toString());
    if (!hold) done();
  };
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await client.subscribeAsync(SHARE, { qos: 1 });
  return { client, got };
}

async function publisher(b: RunningBroker, clientId: string): Promise<MqttClient> {
  const client = await connectClient(b.mqttUrl, { clientId, protocolVersion: 4, reconnectPeriod: 0 });
  clients.push(client);
  return client;
}

describe('write-behind in the group queues', () => {
  it('writes nothing that a member acknowledges in time; with BROKER_WRITE_BEHIND_MS=0, writes everything', async () => {
    for (const [ms, written] of [
      ['10000', 0],
      ['0', 300],
    ] as const) {
      const b = await broker({ BROKER_WRITE_BEHIND_MS: ms });
      const members = [await member(b, `wb-a-${ms}`), await member(b, `wb-b-${ms}`)];
      const pub = await publisher(b, `wb-pub-${ms}`);
      await Promise.all(Array.from({ length: 300 }, (_, i) => pub.publishAsync(TOPIC, `m${i}`, { qos: 1 })));
      await eventually(() => members[0]!.got.length + members[1]!.got.length === 300, { what: 'every message delivered' });
      const got = [...members[0]!.got, ...members[1]!.got].sort();
      assert.deepEqual(got, Array.from({ length: 300 }, (_, i) => `m${i}`).sort(), 'each message once');
      assert.ok(members[0]!.got.length > 0 && members[1]!.got.length > 0, 'both members got some');
      await eventually(async () => (await shareMetric(b, 'mqtt_shared_queue_depth')) === 0, { what: 'the queue empty' });
      assert.equal(await shareMetric(b, 'mqtt_shared_written_total'), written, `written with BROKER_WRITE_BEHIND_MS=${ms}`);
      assert.equal(await shareMetric(b, 'mqtt_shared_never_written_total'), 300 - written);
    }
  });

  it('writes what no member acknowledges before its PUBACK, so a kill -9 right after loses nothing', async () => {
    const env = { BROKER_WRITE_BEHIND_MS: '300' };
    let b = await broker(env);
    const silent = await member(b, 'wb-silent', { hold: true });
    const pub = await publisher(b, 'wb-pub-kill');
    await pub.publishAsync(TOPIC, 'k1', { qos: 1 });
    assert.deepEqual(silent.got, ['k1'], 'handed to the member before being written');
    assert.equal(await shareMetric(b, 'mqtt_shared_written_total'), 1, 'written once the wait was over, before the PUBACK');
    await silent.client.endAsync(true);
    await pub.endAsync(true);
    await b.kill();

    b = await broker({ ...env, DATA_DIR: b.dataDir });
    const back = await member(b, 'wb-silent');
    await eventually(() => back.got.length >= 1, { what: 'the message after the restart' });
    assert.deepEqual(back.got, ['k1']);
  });

  it('reads a publisher on while its PUBACKs wait, and sends the PUBACKs in the order of the publishes', async () => {
    const b = await broker({ BROKER_WRITE_BEHIND_MS: '10000', BROKER_INFLIGHT_WINDOW: '1' });
    const slow = await member(b, 'wb-order-slow', { hold: true });
    const fast = await member(b, 'wb-order-fast');
    // The fast member away: the first two messages can only wait for the slow one, which holds the first.
    await fast.client.endAsync();
    await eventually(async () => (await shareMetric(b, 'mqtt_shared_members_online')) === 1, { what: 'the broker to see the fast member gone' });
    const pub = await publisher(b, 'wb-pub-order');
    const acked: string[] = [];
    const publish = (m: string) => pub.publishAsync(TOPIC, m, { qos: 1 }).then(() => acked.push(m));
    // Both in one write, so the broker reads them together: Aedes would read the connection on only
    // once both are done, that is once the first is written, BROKER_WRITE_BEHIND_MS later.
    pub.stream.cork();
    const early = [publish('first'), publish('second')];
    process.nextTick(() => pub.stream.uncork());
    await eventually(() => slow.got.includes('first'), { what: 'the first message at the slow member' });
    const back = await member(b, 'wb-order-fast');
    await eventually(() => back.got.includes('second'), { what: 'the second message at the fast member' });
    const third = publish('third');
    await eventually(() => back.got.includes('third'), { what: 'the third message read and delivered while the first PUBACK waits' });
    assert.deepEqual(acked, [], 'the first PUBACK waits for the write, and the others for the first');
    await Promise.all([...early, third]);
    assert.deepEqual(acked, ['first', 'second', 'third'], 'PUBACKs in the order of the publishes (MQTT-4.6.0-2)');
    assert.equal(await shareMetric(b, 'mqtt_shared_written_total'), 1, 'only the held message was written');
    assert.equal(await shareMetric(b, 'mqtt_shared_never_written_total'), 2);
  });

  it('reads a publisher that floods without waiting for PUBACKs no further than READ_AHEAD publishes ahead', async () => {
    // Nothing is acknowledged or written for 10 s, and the group's window in memory has room for
    // all: only the read-ahead cap stops the broker from taking everything in.
    const b = await broker({ BROKER_WRITE_BEHIND_MS: '10000', BROKER_QUEUE_MEMORY_MESSAGES: '100000', BROKER_QUEUE_MEMORY_BYTES: String(256 * 1024 * 1024) });
    await member(b, 'wb-flood-member', { hold: true });
    const pub = await publisher(b, 'wb-flood-pub');
    const payload = Buffer.alloc(1024, 'f');
    for (let i = 0; i < 20_000; i++) pub.publish(TOPIC, payload, { qos: 1 }, () => {});
    const taken = async () => (await shareMetric(b, 'mqtt_shared_queue_depth')) + (await shareMetric(b, 'mqtt_shared_inflight'));
    await eventually(async () => (await taken()) >= READ_AHEAD.publishes, { what: 'the broker to read the publisher up to the cap' });
    // Then it stops reading: what the publisher still has to send stays where it is (20 MB against
    // the kernel's few), between two looks half a second apart.
    let before = -1;
    await eventually(
      () => {
        const left = pub.stream.writableLength;
        const still = left > 0 && left === before;
        before = left;
        return still;
      },
      { intervalMs: 500, what: 'the broker to stop reading the publisher' },
    );
    const n = await taken();
    // The cap, plus the rest of what Aedes read from the socket in one go when it was reached: all
    // the stream had buffered, up to two 64 KiB chunks, 124 of these publishes (a CI run saw 66).
    assert.ok(n <= READ_AHEAD.publishes + 124, `${n} publishes taken in, for a cap of ${READ_AHEAD.publishes}`);
  });
});

describe('publishes only a group wants (they skip Aedes) face the same checks', () => {
  const users = { stock: 'stock-pass', worker: 'worker-pass', viewer: 'viewer-pass', catalog: 'catalog-pass' };
  const RESERVED = 'woodytoys/stock/reserved';

  it('refuses a low-privilege user and an ill-formed topic before any PUBACK, and the group gets nothing from them', async () => {
    const b = await broker({ BROKER_ALLOW_ANONYMOUS: 'false', BROKER_PASSWORDS: formatPasswordFile(users).trim().split('\n').join(',') });
    const login = (user: keyof typeof users, clean = true) =>
      connectClient(b.mqttUrl, { clientId: `${user}-direct-${clean ? 'c' : 'p'}`, username: user, password: users[user], clean, protocolVersion: 4, reconnectPeriod: 0 });
    // The only subscriber of the topic is a group member: its publishes take the direct path.
    const worker = await login('worker', false);
    clients.push(worker);
    const got: string[] = [];
    worker.on('message', (_topic, payload) => got.push(payload.toString()));
    await worker.subscribeAsync(`$share/order-workers/${RESERVED}`, { qos: 1 });

    for (const [who, topic] of [
      ['viewer', RESERVED],
      ['catalog', RESERVED],
      ['stock', 'woodytoys/stock/+'],
    ] as const) {
      const c = await login(who);
      clients.push(c);
      let closed = false;
      c.once('close', () => (closed = true));
      let acknowledged = false;
      c.publish(topic, `from ${who}`, { qos: 1 }, (err) => (acknowledged = !err));
      await eventually(() => closed, { what: `the connection of ${who} closed for a publish on ${topic}` });
      assert.equal(acknowledged, false, `${who} on ${topic}: no PUBACK, the connection closed`);
    }
    const stock = await login('stock');
    clients.push(stock);
    await stock.publishAsync(RESERVED, 'from stock', { qos: 1 });
    await eventually(() => got.includes('from stock'), { what: 'the allowed publish at the member' });
    assert.deepEqual(got, ['from stock'], 'nothing refused reached the group');
  });
});
