// Dead letters are kept, shown and replayed, end to end on the real system: an order whose ERP
// attempts all fail is parked (pending, stock held) and its dead letter replayed once the ERP is back
// confirms it exactly once; a malformed message's dead letter survives kill -9 of the broker and of
// the dead-letter service; and MQTT users without the right cannot forge dead letters or read them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { DeadLetter } from '../api/deadletters/store.js';
import { devCredentials } from '../broker/dev-logins.js';
import { orderConfirmed } from '../lib/topics.js';
import { eventually } from '../harness/process.js';
import { grantedQos } from '../harness/broker.js';
import { ADMIN_KEY, getJson, getStock, postOrder, sampleOrder, startStack, type Stack } from '../harness/stack.js';
import { connectClient } from '../harness/mqtt.js';

type Letter = DeadLetter;
interface Order {
  status: string;
  history: { status: string; detail: string | null }[];
}

describe('dead letters', () => {
  let stack: Stack;
  const admin = { 'x-api-key': ADMIN_KEY };
  const letters = async (query = '') => {
    const res = await fetch(`${stack.urls.deadletters}/api/deadletters${query}`, { headers: admin });
    assert.equal(res.status, 200);
    return ((await res.json()) as { items: Letter[] }).items;
  };
  const replay = (id: string) => fetch(`${stack.urls.deadletters}/api/deadletters/${id}/replay`, { method: 'POST', headers: admin });

  before(async () => {
    // Every ERP call fails (fault injection) and the worker gives up after two attempts.
    stack = await startStack({ workers: 1, stock: { 'wooden-train': 10 }, erpEnv: { ERP_ERROR_RATE: '1' }, workerEnv: { WORKER_MAX_ATTEMPTS: '2' } });
  });
  after(async () => {
    await stack?.stop();
  });

  it('parks an order the ERP cannot take, and a replay confirms it exactly once', { timeout: 180_000 }, async () => {
    const placed = await postOrder(stack.urls.orders, sampleOrder(1)); // 2 wooden trains
    assert.equal(placed.status, 202);
    const orderId = placed.body.id!;
    const orderUrl = `${stack.urls.orders}/api/orders/${orderId}`;

    const letter = await eventually(async () => (await letters('?consumer=order-workers')).find((l) => l.topic === 'woodytoys/stock/reserved'), { what: "the order's dead letter" });
    assert.match(letter.reason, /^gave up after 2 attempts: ERP answered 500/);
    assert.equal(letter.attempts, 2);
    assert.ok(letter.replayable);
    assert.ok(letter.eventId);
    const parked = await eventually(async () => {
      const o = await getJson<Order>(orderUrl);
      return o.history.some((h) => h.status === 'parked') && o;
    }, { what: 'the order parked' });
    assert.equal(parked.status, 'pending', 'transient is not final');
    assert.match(parked.history.find((h) => h.status === 'parked')!.detail!, /gave up after 2 attempts/);
    assert.equal((await getJson<{ status: string }>(`${stack.urls.stock}/api/stock/reservations/${orderId}`)).status, 'held');
    assert.deepEqual(await getStock(stack.urls.stock, 'wooden-train').then((l) => [l.available, l.reserved]), [8, 2]);
    assert.equal(((await getJson<{ records: Record<string, number> }>(`${stack.urls.erp}/erp/stats`)).records.order ?? 0), 0);

    // The fault is lifted. A refusal by the ERP is still final: that order is rejected.
    await stack.restart('erp', { ERP_ERROR_RATE: '0' });
    const refused = await postOrder(stack.urls.orders, { ...sampleOrder(2), customer: { name: 'Eve', email: 'eve@blocked.example' } });
    await eventually(async () => (await getJson<Order>(`${stack.urls.orders}/api/orders/${refused.body.id}`)).status === 'rejected', { what: 'the refused order rejected' });

    const sent = await replay(letter.id);
    assert.equal(sent.status, 202, await sent.clone().text());
    assert.ok(((await sent.json()) as Letter).replayedAt);
    const again = await replay(letter.id);
    assert.equal(again.status, 409, 'a dead letter is replayed once');
    assert.equal(again.headers.get('content-type'), 'application/problem+json');

    const confirmed = await eventually(async () => {
      const o = await getJson<Order>(orderUrl);
      return o.status === 'confirmed' && o;
    }, { what: 'the replayed order confirmed' });
    assert.deepEqual(confirmed.history.map((h) => h.status), ['pending', 'parked', 'confirmed']);
    const stats = await getJson<{ records: Record<string, number>; duplicates: number }>(`${stack.urls.erp}/erp/stats`);
    assert.equal(stats.records.order, 1, 'recorded in the ERP exactly once');
    await getJson(`${stack.urls.erp}/erp/records/${encodeURIComponent(`order:${orderId}`)}`);
    await eventually(async () => (await getJson<{ status: string }>(`${stack.urls.stock}/api/stock/reservations/${orderId}`)).status === 'sold', { what: 'the reservation sold' });
    assert.deepEqual(await getStock(stack.urls.stock, 'wooden-train').then((l) => [l.available, l.reserved]), [8, 0]);

    // Metrics: stored, replayed; nothing parked any more.
    const metrics = await (await fetch(`${stack.urls.deadletters}/metrics`)).text();
    assert.match(metrics, /^dead_letters_stored_total\{consumer="order-workers"[^}]*\} 1$/m);
    assert.match(metrics, /^dead_letters_replayed_total\{consumer="order-workers"[^}]*\} 1$/m);
    assert.match(await (await fetch(`${stack.urls.orders}/metrics`)).text(), /^orders_parked(\{[^}]*\})? 0$/m);
  });

  it('keeps a malformed message as a dead letter through kill -9 of the broker and of its consumer', { timeout: 180_000 }, async () => {
    const probe = await connectClient(stack.urls.mqtt, { clientId: 'deadletters-probe', clean: true, reconnectPeriod: 0 });
    const seen: string[] = [];
    probe.on('message', (topic) => seen.push(topic));
    await probe.subscribeAsync('woodytoys/deadletter/#', { qos: 1 });
    // Nobody stores dead letters now: they wait in the group's queue at the broker.
    await stack.proc('deadletters').kill();
    await probe.publishAsync(orderConfirmed.topic, '{"not": "an event"', { qos: 1 });
    // orders and stock both read that topic: one dead letter each, published and acknowledged.
    await eventually(() => seen.includes('woodytoys/deadletter/orders') && seen.includes('woodytoys/deadletter/stock'), { what: 'both dead letters published' });
    await probe.endAsync();
    await stack.proc('broker').kill();
    await stack.restart('broker');
    await stack.restart('deadletters');
    const stored = async () => (await letters()).filter((l) => l.topic === orderConfirmed.topic);
    let last: Letter[] = [];
    const found = await eventually(async () => {
      const ls = (last = await stored());
      return ls.length === 2 && ls;
    }, { what: 'both dead letters stored' }).catch((err: Error) => {
      // Say what was there: one missing, or one twice.
      throw new Error(`${err.message}; stored: ${JSON.stringify(last.map((l) => ({ id: l.id, consumer: l.consumer })))}`);
    });
    assert.deepEqual(found.map((l) => l.consumer).sort(), ['orders', 'stock']);
    for (const l of found) {
      assert.equal(l.reason, 'payload is not valid JSON');
      assert.equal(l.replayable, false);
    }
    const one = await fetch(`${stack.urls.deadletters}/api/deadletters/${found[0]!.id}/replay`, { method: 'POST', headers: admin });
    assert.equal(one.status, 422, 'a payload that is not an event cannot be replayed');

    await stack.proc('deadletters').kill();
    await stack.restart('deadletters');
    assert.deepEqual((await stored()).map((l) => l.id).sort(), found.map((l) => l.id).sort(), 'still there, once each');
  });

  it('lets no other MQTT user read dead letters or forge them into the store', { timeout: 120_000 }, async () => {
    const credentials = devCredentials(stack.dataDir);
    const as = (user: 'viewer' | 'erp') => connectClient(stack.urls.mqtt, { username: user, password: credentials[user], clientId: `${user}-hostile`, clean: true, reconnectPeriod: 0 });
    const viewer = await as('viewer');
    assert.equal(await grantedQos(viewer, 'woodytoys/deadletter/#'), 128);
    assert.equal(await grantedQos(viewer, '$share/deadletters/woodytoys/deadletter/+'), 128);
    await viewer.endAsync();

    const forged = JSON.stringify({
      specversion: '1.0', id: '3f1c2e4a-5b6d-4e7f-8a9b-0c1d2e3f4a5b', source: '/forged', type: 'woodytoys.deadletter', time: new Date().toISOString(),
      data: { consumer: 'stock', topic: 'woodytoys/stock/reserved', reason: 'forged', payload: '{}', payloadBytes: 2 },
    });
    for (const user of ['erp', 'viewer'] as const) {
      const client = await as(user);
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      let acknowledged = false;
      // The ACL forbids it: the broker ends the connection before any PUBACK.
      client.publish('woodytoys/deadletter/stock', forged, { qos: 1 }, (err) => (acknowledged = !err));
      await closed;
      assert.equal(acknowledged, false, `${user}'s forged dead letter was acknowledged`);
      client.end(true);
    }
    // A real dead letter stored after the forged ones were sent: none of them got in.
    const probe = await connectClient(stack.urls.mqtt, { clientId: 'deadletters-probe-2', clean: true, reconnectPeriod: 0 });
    await probe.publishAsync(orderConfirmed.topic, 'still not an event', { qos: 1 });
    await probe.endAsync();
    await eventually(async () => (await letters()).filter((l) => l.topic === orderConfirmed.topic).length === 4, { what: 'the later dead letters stored' });
    assert.ok(!(await letters('?limit=100')).some((l) => l.reason === 'forged'));
    const anonymous = await fetch(`${stack.urls.deadletters}/api/deadletters`);
    assert.equal(anonymous.status, 401, 'the HTTP API takes the admin key');
  });
});
