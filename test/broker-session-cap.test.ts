// A stranger with the public login opening persistent sessions in a loop, each with a new client id:
// the repository's ACL keeps the viewer at 100 sessions ("#@ sessions", broker/session-cap.ts). Each
// session had cost the broker memory and a place in every public publish's fan-out, without end.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { Acl } from '../broker/acl.js';
import { FAST_PATHS_OFF } from '../broker/aedes-adapter.js';
import { aclFile } from '../broker/mosquitto/run.js';
import { closeMqtt } from '../lib/mqtt.js';
import { grantedQos, startBroker, type RunningBroker } from '../harness/broker.js';
import { eventually } from '../harness/process.js';
import { aclBrokerDir, password, tearDown } from '../harness/acl-broker.js';
import { RawClient, connectPacket } from './support/mqtt-raw.js';
import { startBrokerCluster, type RunningCluster } from '../harness/cluster.js';
import { requireProgram } from './support/programs.js';
import { Redis } from 'ioredis';

const USERS = ['orders', 'viewer'];
const LIMIT = Acl.read(aclFile).sessionLimit('viewer')!;
const PUBLIC = 'woodytoys/public/orders/+';
const redisMissing = requireProgram('redis-server', 'redis-server');

/**
 * Connects `clientId` as `user`, a persistent session unless `more` says otherwise, listening before
 * the CONNACK (what was queued may come in the same read): what it receives, and whether the broker
 * had its session.
 */
async function connectSession(url: string, user: string, clientId: string, clients: MqttClient[], more: IClientOptions = {}) {
  const client = mqtt.connect(url, { username: user, password: password(user), clientId, clean: false, reconnectPeriod: 0, connectTimeout: 10_000, ...more });
  clients.push(client);
  const got: string[] = [];
  client.on('message', (_topic, payload) => got.push(payload.toString()));
  const sessionPresent = await new Promise<boolean>((resolve, reject) => {
    client.once('connect', (connack) => resolve(connack.sessionPresent));
    client.once('error', reject);
  });
  return { client, got, sessionPresent };
}

describe("a stranger opening the public login's persistent sessions in a loop", () => {
  let dir: string;
  let env: Record<string, string>;
  let broker: RunningBroker;
  const clients: MqttClient[] = [];
  const start = () => startBroker({ env });
  const connect = (user: string, clientId: string, more: IClientOptions = {}) => connectSession(broker.mqttUrl, user, clientId, clients, more);
  /** A session with one subscription, its client gone. */
  const leaveSession = async (user: string, clientId: string, filter: string) => {
    const { client } = await connect(user, clientId);
    assert.deepEqual((await client.subscribeAsync(filter, { qos: 1 })).map((g) => g.qos), [1], `${clientId} subscribed`);
    await closeMqtt(client, 2000);
  };
  const metric = async (name: string) => Number(new RegExp(`^${name}(?:{[^}]*})? (\\d+)$`, 'm').exec(await (await fetch(`${broker.httpUrl}/metrics`)).text())?.[1] ?? 0);
  const viewerSessions = () => metric('mqtt_capped_sessions');
  const ended = () => metric('mqtt_sessions_ended_total');

  before(async () => {
    ({ dir, env } = aclBrokerDir('broker-session-cap-', USERS));
    broker = await start();
  });
  after(() => tearDown(clients, [broker], dir));

  it(`keeps ${LIMIT} sessions: one more ends the one away the longest, whose client comes back to none; a service's session is never ended`, { timeout: 180_000 }, async () => {
    assert.equal(LIMIT, 100, "the repository ACL's bound for the viewer");
    await leaveSession('orders', 'orders-keeper', 'woodytoys/orders/confirmed');
    for (let i = 0; i < LIMIT; i++) await leaveSession('viewer', `viewer-loop-${i}`, PUBLIC);
    assert.equal(await viewerSessions(), LIMIT);
    assert.equal(await ended(), 0);

    const { client: orders } = await connect('orders', 'orders-publisher', { clean: true });
    await orders.publishAsync('woodytoys/public/orders/o', 'while-away', { qos: 1 });
    await eventually(async () => (await metric('mqtt_session_queued_messages')) >= LIMIT, { what: `the public message queued for the ${LIMIT} away sessions` });

    await leaveSession('viewer', `viewer-loop-${LIMIT}`, PUBLIC);
    assert.equal(await ended(), 1, 'one session ended');
    assert.equal(await viewerSessions(), LIMIT);
    await eventually(() => broker.logs.some((l) => l.includes('"viewer-loop-0"') && l.includes('persistent session ended')), { what: 'the log line naming the ended session' });

    // The next oldest away still has its session and what waited for it…
    const second = await connect('viewer', 'viewer-loop-1');
    assert.equal(second.sessionPresent, true, 'viewer-loop-1 kept its session');
    await eventually(() => second.got.includes('while-away'), { what: 'viewer-loop-1 receiving what waited for it' });
    // …while the first comes back to no session: nothing waited for it; subscribing again works.
    const first = await connect('viewer', 'viewer-loop-0');
    assert.equal(first.sessionPresent, false, 'viewer-loop-0 has no session any more (CONNACK session present 0)');
    assert.deepEqual((await first.client.subscribeAsync(PUBLIC, { qos: 1 })).map((g) => g.qos), [1], 'it subscribes again');
    assert.equal(await ended(), 2, 'which ended the next session away the longest (viewer-loop-2)');
    await orders.publishAsync('woodytoys/public/orders/o', 'marker', { qos: 1 });
    await eventually(() => first.got.includes('marker'), { what: 'the marker reaching viewer-loop-0' });
    assert.deepEqual(first.got, ['marker'], 'the message that waited in its ended session is gone with it');
    assert.equal((await connect('viewer', 'viewer-loop-2')).sessionPresent, false);

    const keeper = await connect('orders', 'orders-keeper');
    assert.equal(keeper.sessionPresent, true, "the orders service's session was never counted nor ended");
  });

  it('counts the sessions it finds at start; with every one connected, one more subscription is refused (SUBACK 0x80) and none is ended', { timeout: 180_000 }, async () => {
    await Promise.all(clients.splice(0).map((c) => closeMqtt(c, 2000)));
    await broker.stop();
    broker = await start();
    assert.equal(await viewerSessions(), LIMIT, 'the stored sessions, counted before any client connects');
    const held: MqttClient[] = [];
    for (let i = 0; i < LIMIT; i++) {
      const { client } = await connect('viewer', `viewer-held-${i}`);
      assert.deepEqual((await client.subscribeAsync(PUBLIC, { qos: 1 })).map((g) => g.qos), [1]);
      held.push(client);
    }
    const endedBefore = await ended();
    assert.equal(endedBefore, LIMIT, `the ${LIMIT} stored sessions were ended to make room, none of the connected ones`);
    const { client: extra } = await connect('viewer', 'viewer-held-one-more');
    assert.equal(await grantedQos(extra, PUBLIC), 128, 'refused');
    assert.equal(await ended(), endedBefore);
    await eventually(() => broker.logs.some((l) => l.includes('viewer-held-one-more') && l.includes(`keeps ${LIMIT} persistent sessions, every one connected`)), { what: 'the refusal in the log' });
    // A clean-session client is not counted: it keeps nothing once gone.
    const { client: clean } = await connect('viewer', 'viewer-clean', { clean: true });
    assert.deepEqual((await clean.subscribeAsync(PUBLIC, { qos: 1 })).map((g) => g.qos), [1]);
    const connected = await metric('mqtt_connected_clients');
    await closeMqtt(held[0]!, 2000);
    await eventually(async () => (await metric('mqtt_connected_clients')) < connected, { what: 'the broker seeing viewer-held-0 go' });
    assert.equal(await grantedQos(extra, PUBLIC), 1, 'once one goes away, room is made');
  });
});

describe("a stranger subscribing the public login's clients to ever more topic filters", () => {
  let dir: string;
  let broker: RunningBroker;
  const clients: MqttClient[] = [];
  const LIMIT_FILTERS = Acl.read(aclFile).filterLimit('viewer')!;
  const login = async (clientId: string, clean: boolean) => {
    const client = await mqtt.connectAsync(broker.mqttUrl, { username: 'viewer', password: password('viewer'), clientId, clean, reconnectPeriod: 0, connectTimeout: 10_000 });
    clients.push(client);
    return client;
  };
  const filters = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `woodytoys/public/stock/levels/${prefix}${i}`);

  before(async () => {
    const made = aclBrokerDir('broker-filter-cap-', USERS);
    dir = made.dir;
    broker = await startBroker({ env: made.env });
  });
  after(() => tearDown(clients, [broker], dir));

  it(`each client holds at most ${LIMIT_FILTERS}: one more is refused, one given back makes room, a resumed session's own count`, { timeout: 60_000 }, async () => {
    assert.equal(LIMIT_FILTERS, 100, "the repository ACL's bound for the viewer");
    const viewer = await login('viewer-filters', false);
    const granted = await viewer.subscribeAsync(filters('p', LIMIT_FILTERS), { qos: 1 });
    assert.deepEqual(new Set(granted.map((g) => g.qos)), new Set([1]), `all ${LIMIT_FILTERS} granted`);
    assert.equal(await grantedQos(viewer, 'woodytoys/public/stock/levels/one-more'), 128, 'one more is refused');
    await eventually(() => broker.logs.some((l) => l.includes('viewer-filters') && l.includes(`hold at most ${LIMIT_FILTERS} topic filters`)), { what: 'the refusal in the log' });
    assert.equal(await grantedQos(viewer, 'woodytoys/public/stock/levels/p7'), 1, 'a filter it holds may be subscribed again');
    await viewer.unsubscribeAsync('woodytoys/public/stock/levels/p0');
    assert.equal(await grantedQos(viewer, 'woodytoys/public/stock/levels/one-more'), 1, 'given one back, room for another');
    await closeMqtt(viewer, 2000);
    // Resumed: its 100 stored filters are restored (and counted) before the CONNACK.
    const again = await login('viewer-filters', false);
    assert.equal(await grantedQos(again, 'woodytoys/public/stock/levels/after-resume'), 128, 'the restored filters count');
    // An empty client id gets a random one from the broker: the bound goes with the login, not the id.
    const anonymousId = await login('', true);
    await anonymousId.subscribeAsync(filters('c', LIMIT_FILTERS), { qos: 0 });
    assert.equal(await grantedQos(anonymousId, 'woodytoys/public/stock/levels/c-more'), 128);
  });

  it("bounds a WebSocket client's session queue once its connection closes, as a TCP client's", { timeout: 60_000 }, async () => {
    const QUEUE = Acl.read(aclFile).queueLimit('viewer')!;
    const viewer = await mqtt.connectAsync(broker.wsUrl, { username: 'viewer', password: password('viewer'), clientId: 'viewer-ws', clean: false, reconnectPeriod: 0, connectTimeout: 10_000 });
    assert.equal(await grantedQos(viewer, 'woodytoys/public/orders/+'), 1);
    await closeMqtt(viewer, 2000);
    const orders = await mqtt.connectAsync(broker.mqttUrl, { username: 'orders', password: password('orders'), clientId: 'orders-ws-test', clean: true, reconnectPeriod: 0 });
    clients.push(orders);
    const dropped = async () => Number(/^mqtt_session_dropped_messages_total(?:{[^}]*})? (\d+)$/m.exec(await (await fetch(`${broker.httpUrl}/metrics`)).text())?.[1] ?? 0);
    const before = await dropped();
    for (let i = 0; i < QUEUE + 10; i += 100) await Promise.all(Array.from({ length: Math.min(100, QUEUE + 10 - i) }, (_, k) => orders.publishAsync('woodytoys/public/orders/ws', String(i + k), { qos: 1 })));
    await eventually(async () => (await dropped()) - before >= 10, { what: 'the messages past the bound not kept for the away WebSocket session' });
    assert.equal((await dropped()) - before, 10);
  });

  it('logs a few of the subscriptions it refuses a client, not each: the first of each reason, then the 10th, 100th… with the count', { timeout: 60_000 }, async () => {
    const refusedTotal = async () => Number(/^mqtt_refused_total{[^}]*what="subscribe"[^}]*} (\d+)$/m.exec(await (await fetch(`${broker.httpUrl}/metrics`)).text())?.[1] ?? 0);
    const before = await refusedTotal();
    const raw = await RawClient.open(broker.mqttUrl);
    raw.send(connectPacket({ clientId: 'viewer-noisy', clean: true, username: 'viewer', password: password('viewer') }));
    // 300 filters the viewer may not read, in three SUBSCRIBEs, then a $share it may not join.
    for (let p = 0; p < 3; p++) raw.send(mqttPacket.generate({ cmd: 'subscribe', messageId: p + 1, subscriptions: Array.from({ length: 100 }, (_, i) => ({ topic: `woodytoys/orders/x${p * 100 + i}`, qos: 1 as const })) }));
    raw.send(mqttPacket.generate({ cmd: 'subscribe', messageId: 4, subscriptions: [{ topic: '$share/stock/woodytoys/public/#', qos: 1 }] }));
    await eventually(() => raw.answers().filter((a) => a.type === 'suback').length === 4, { what: 'the four SUBACKs' });
    assert.ok(raw.answers().every((a) => a.type !== 'suback' || a.granted!.every((g) => g === 128)), 'every filter refused');
    await eventually(async () => (await refusedTotal()) - before === 301, { what: 'every refusal counted' });
    const lines = () => broker.logs.filter((l) => l.includes('viewer-noisy') && l.includes('subscription refused')).map((l) => JSON.parse(l) as { reason: string; refused: number });
    await eventually(() => lines().length === 4 || undefined, { what: 'four log lines' });
    assert.deepEqual(lines().map((l) => l.refused), [1, 10, 100, 301], 'the 1st, 10th and 100th, and the first with another reason');
    assert.equal(new Set(lines().map((l) => l.reason)).size, 2);
    raw.socket.destroy();
  });

  it('gives a filter back as its UNSUBSCRIBE is read: a SUBSCRIBE in the same write finds the room, and the two cannot be looped past the bound', { timeout: 60_000 }, async () => {
    const raw = await RawClient.open(broker.mqttUrl);
    const subacks = () => raw.answers().filter((a) => a.type === 'suback');
    raw.send(connectPacket({ clientId: 'viewer-raw', clean: false, username: 'viewer', password: password('viewer') }));
    raw.send(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: filters('r', LIMIT_FILTERS).map((topic) => ({ topic, qos: 1 })) }));
    await eventually(() => subacks().length === 1, { what: 'the first SUBACK' });
    assert.deepEqual(new Set(subacks()[0]!.granted), new Set([1]));
    // At the bound: give one back and take another, in one write (one read at the broker).
    raw.send(Buffer.concat([mqttPacket.generate({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['woodytoys/public/stock/levels/r0'] }), mqttPacket.generate({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'woodytoys/public/stock/levels/d', qos: 1 }] })]));
    await eventually(() => subacks().length === 2, { what: 'the second SUBACK' });
    assert.deepEqual(subacks()[1]!.granted, [1], 'the filter given back in the same write made room');
    // Unsubscribing and subscribing a filter again in one write, over and over, leaves the count where it was.
    for (let i = 0; i < 5; i++) {
      const f = `woodytoys/public/stock/levels/r${i + 1}`;
      raw.send(Buffer.concat([mqttPacket.generate({ cmd: 'unsubscribe', messageId: 10 + 2 * i, unsubscriptions: [f] }), mqttPacket.generate({ cmd: 'subscribe', messageId: 11 + 2 * i, subscriptions: [{ topic: f, qos: 1 }] })]));
    }
    raw.send(mqttPacket.generate({ cmd: 'subscribe', messageId: 99, subscriptions: [{ topic: 'woodytoys/public/stock/levels/past', qos: 1 }] }));
    await eventually(() => subacks().some((a) => a.messageId === 99), { what: 'the last SUBACK' });
    assert.deepEqual(subacks().find((a) => a.messageId === 99)!.granted, [128], 'still at the bound');
    raw.socket.destroy();
    // Watching UNSUBSCRIBEs must not cost the fast paths (a second listener on the parser turned them off).
    assert.ok(!broker.logs.some((l) => l.includes(FAST_PATHS_OFF)), 'the fast paths stayed on');
  });
});

describe('the order sessions went away in, over WebSocket and across a restart (an ACL keeping two sessions)', () => {
  let dir: string;
  let env: Record<string, string>;
  let broker: RunningBroker;
  const clients: MqttClient[] = [];
  const ended = async () => Number(/^mqtt_sessions_ended_total(?:{[^}]*})? (\d+)$/m.exec(await (await fetch(`${broker.httpUrl}/metrics`)).text())?.[1] ?? 0);

  before(async () => {
    const made = aclBrokerDir('broker-session-cap-ws-', USERS);
    dir = made.dir;
    // The repository's rules for the viewer, with room for two sessions instead of a hundred.
    const acl = join(dir, 'acl');
    writeFileSync(acl, 'user viewer\n#@ clientid viewer viewer-*\n#@ queue 10\n#@ sessions 2\ntopic read woodytoys/public/#\n\nuser orders\n#@ clientid orders orders-*\n');
    env = { ...made.env, BROKER_ACL_FILE: acl, BROKER_GROUPS: 'none' };
    broker = await startBroker({ env });
  });
  after(() => tearDown(clients, [broker], dir));

  it("a WebSocket client's session is away once its stream closes: the one away the longest, and the one ended to make room", { timeout: 60_000 }, async () => {
    const { client: ws } = await connectSession(broker.wsUrl, 'viewer', 'viewer-ws', clients);
    assert.deepEqual((await ws.subscribeAsync(PUBLIC, { qos: 1 })).map((g) => g.qos), [1]);
    await closeMqtt(ws, 2000);
    const { client: tcp } = await connectSession(broker.mqttUrl, 'viewer', 'viewer-tcp', clients);
    assert.deepEqual((await tcp.subscribeAsync(PUBLIC, { qos: 1 })).map((g) => g.qos), [1]);
    await closeMqtt(tcp, 2000);
    // A third: the WebSocket client's session, away the longest, is ended. Had its stream's close
    // gone unseen, it would count as connected, and the TCP client's session would go instead.
    const { client: third } = await connectSession(broker.mqttUrl, 'viewer', 'viewer-third', clients);
    assert.equal(await grantedQos(third, PUBLIC), 1);
    assert.equal(await ended(), 1);
    assert.equal((await connectSession(broker.mqttUrl, 'viewer', 'viewer-tcp', clients)).sessionPresent, true, 'the TCP client kept its session');
    assert.equal((await connectSession(broker.wsUrl, 'viewer', 'viewer-ws', clients)).sessionPresent, false, "the WebSocket client's was ended");
  });

  it('after a restart, the session ended first is the one away the longest, not the first by client id', { timeout: 60_000 }, async () => {
    await Promise.all(clients.splice(0).map((c) => closeMqtt(c, 2000)));
    // Two sessions left, away in this order; by client id the second would come first.
    for (const id of ['viewer-z-away-first', 'viewer-a-away-second']) {
      const { client } = await connectSession(broker.mqttUrl, 'viewer', id, clients);
      assert.equal(await grantedQos(client, PUBLIC), 1);
      await closeMqtt(client, 2000);
    }
    await broker.stop();
    broker = await startBroker({ env });
    const { client: next } = await connectSession(broker.mqttUrl, 'viewer', 'viewer-after-restart', clients);
    assert.equal(await grantedQos(next, PUBLIC), 1);
    assert.equal(await ended(), 1);
    assert.equal((await connectSession(broker.mqttUrl, 'viewer', 'viewer-a-away-second', clients)).sessionPresent, true, 'the one away since later kept its session');
    assert.equal((await connectSession(broker.mqttUrl, 'viewer', 'viewer-z-away-first', clients)).sessionPresent, false, 'the one away the longest was ended');
  });
});

describe("the public login's persistent sessions on two broker nodes (BROKER_STORE=redis)", { skip: redisMissing }, () => {
  let dir: string;
  let cluster: RunningCluster;
  let redis: Redis;
  const clients: MqttClient[] = [];
  /** The user is the client id's first word (viewer-…, orders-…). */
  const connect = (url: string, clientId: string, more: IClientOptions = {}) => connectSession(url, clientId.split('-')[0]!, clientId, clients, more);
  const metric = async (node: number, name: string) =>
    Number(new RegExp(`^${name}(?:{[^}]*})? (\\d+)$`, 'm').exec(await (await fetch(`${cluster.nodes[node]!.httpUrl}/metrics`)).text())?.[1] ?? 0);
  /** The i-th session's node: they alternate. */
  const url = (i: number) => cluster.nodes[i % 2]!.mqttUrl;

  before(async () => {
    const made = aclBrokerDir('broker-session-cap-cluster-', USERS);
    dir = made.dir;
    cluster = await startBrokerCluster({ nodes: 2, env: made.env });
    redis = new Redis(cluster.redis.url);
  });
  after(async () => {
    redis?.disconnect();
    await tearDown(clients, [cluster], dir);
  });

  it(`keeps ${LIMIT} sessions across the nodes: one more on either ends the one away the longest, its queue and subscriptions on both`, { timeout: 180_000 }, async () => {
    for (let i = 0; i < LIMIT; i++) {
      const { client } = await connect(url(i), `viewer-spread-${i}`);
      assert.deepEqual((await client.subscribeAsync(PUBLIC, { qos: 1 })).map((g) => g.qos), [1]);
      await closeMqtt(client, 2000);
    }
    assert.equal(await metric(0, 'mqtt_capped_sessions'), LIMIT, 'counted once for the cluster, on either node');
    assert.equal(await metric(1, 'mqtt_capped_sessions'), LIMIT);
    const { client: orders } = await connect(cluster.nodes[0]!.mqttUrl, 'orders-publisher', { clean: true });
    await orders.publishAsync('woodytoys/public/orders/o', 'while-away', { qos: 1 });
    await eventually(async () => (await redis.llen('outgoing:viewer-spread-0')) === 1 || undefined, { what: 'the message queued for the first session' });

    // One more, on the second node: the first session (left on the first node) is ended.
    const { client: extra } = await connect(url(1), `viewer-spread-${LIMIT}`);
    assert.equal(await grantedQos(extra, PUBLIC), 1);
    assert.equal(await metric(1, 'mqtt_sessions_ended_total'), 1);
    assert.equal(await metric(0, 'mqtt_capped_sessions'), LIMIT);
    assert.equal(await redis.exists('outgoing:viewer-spread-0', 'client:viewer-spread-0'), 0, 'its queue and subscriptions are gone from Redis');
    const packets = await redis.keys('packet:*:offlineCount');
    assert.equal(packets.length, 1, 'the message itself is kept for the others');
    assert.equal(await redis.get(packets[0]!), String(LIMIT - 1), 'counted off for the ended session only');

    const second = await connect(url(0), 'viewer-spread-1');
    assert.equal(second.sessionPresent, true, 'the next oldest kept its session');
    await eventually(() => second.got.includes('while-away'), { what: 'viewer-spread-1 receiving what waited for it' });
    const first = await connect(url(1), 'viewer-spread-0');
    assert.equal(first.sessionPresent, false, 'the first comes back to no session, on the other node');
    assert.deepEqual(first.got, []);
  });

  it('a clean start un-counts a session once it has dropped it, and not when the clean CONNECT is refused', { timeout: 60_000 }, async () => {
    const id = 'viewer-with-a-client-id-over-23-bytes';
    const counted = async () => (await redis.zscore('woodytoys:broker:sessions:viewer', id)) !== null;
    const { client } = await connect(url(0), id);
    assert.deepEqual((await client.subscribeAsync(PUBLIC, { qos: 1 })).map((g) => g.qos), [1]);
    await closeMqtt(client, 2000);
    assert.equal(await counted(), true);
    // MQTT 3.1 (MQIsdp, level 3) allows client ids of 23 bytes at most: Aedes refuses this CONNECT
    // (CONNACK 2) after the login, and drops nothing of the stored session.
    const raw = await RawClient.open(url(0));
    raw.send(connectPacket({ clientId: id, protocolName: 'MQIsdp', level: 3, clean: true, username: 'viewer', password: password('viewer') }));
    await eventually(() => raw.answers().some((a) => a.type === 'connack') || raw.closed || undefined, { what: 'the refusal' });
    raw.close();
    assert.deepEqual(raw.answers().find((a) => a.type === 'connack')?.returnCode, 2);
    assert.equal(await redis.exists(`client:${id}`), 1, 'the session is still stored');
    assert.equal(await counted(), true, 'and still counted');
    const { client: clean } = await connect(url(1), id, { clean: true });
    await eventually(async () => !(await counted()) || undefined, { what: 'a clean start un-counting the session it dropped' });
    assert.equal(await redis.exists(`client:${id}`), 0);
    await closeMqtt(clean, 2000);
  });

  it('with every counted session connected, on either node, one more is refused; a killed node\'s clients are away once its lease ends', { timeout: 180_000 }, async () => {
    await Promise.all(clients.splice(0).map((c) => closeMqtt(c, 2000)));
    for (let i = 0; i < LIMIT; i++) {
      const { client } = await connect(url(i), `viewer-held-${i}`);
      assert.deepEqual((await client.subscribeAsync(PUBLIC, { qos: 1 })).map((g) => g.qos), [1]);
    }
    const ended = async () => (await metric(0, 'mqtt_sessions_ended_total')) + (await metric(1, 'mqtt_sessions_ended_total'));
    const endedBefore = await ended();
    const { client: extra } = await connect(url(0), 'viewer-held-one-more');
    assert.equal(await grantedQos(extra, PUBLIC), 128, 'refused: half of the connected sessions are on the other node');
    assert.equal(await ended(), endedBefore, 'none ended');
    // kill -9 of the second node: its fifty clients are cut off, and it cannot say so. Once its
    // lease has run out, their sessions are away, and one is ended to make room.
    const endedHere = await metric(0, 'mqtt_sessions_ended_total');
    await cluster.nodes[1]!.kill();
    await eventually(async () => (await grantedQos(extra, PUBLIC)) === 1 || undefined, { what: "room once the killed node's lease has run out" });
    assert.equal(await metric(0, 'mqtt_sessions_ended_total'), endedHere + 1);
    const kept = async (i: number) => (await redis.exists(`client:viewer-held-${i}`)) === 1;
    const endedIds: number[] = [];
    for (let i = 0; i < LIMIT; i++) if (!(await kept(i))) endedIds.push(i);
    assert.equal(endedIds.length, 1);
    assert.equal(endedIds[0]! % 2, 1, "the session ended is one of the killed node's clients'");
  });
});
