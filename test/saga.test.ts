// The order saga end to end through the real broker: orders → stock (reserve) → workers → ERP →
// orders (confirmed / rejected) and stock (sold / released). Stock levels are set per test product.
// The same cases run on our broker, on our broker as two nodes sharing one Redis (the services
// connected to the nodes in turn, so each step crosses from one node to the other), and on Mosquitto
// (the design's alternative, with the repo's configuration, users and ACL).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { devCredentials } from '../broker/dev-logins.js';
import { stockLevelTopic } from '../lib/topics.js';
import { eventually } from '../harness/process.js';
import { requireProgram } from './support/programs.js';
import { ADMIN_KEY, getJson, getStock, startStack, type BrokerKind, type Stack, type StackOptions } from '../harness/stack.js';

interface Order {
  id: string;
  status: 'pending' | 'confirmed' | 'rejected';
  reason: string | null;
  erpReference: string | null;
  history: { status: string }[];
}
interface ErpStats {
  records: Record<string, number>;
}

const customer = (n: string, domain = 'example.com') => ({ name: `Customer ${n}`, email: `${n}@${domain}` });

async function post(base: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, location: res.headers.get('location'), replayed: res.headers.get('idempotent-replayed'), body: (await res.json()) as Order & { title?: string } };
}

describe('the order saga', () => sagaCases('aedes'));
describe('the order saga on two broker nodes sharing Redis', { skip: requireProgram('redis-server', 'redis-server') }, () => sagaCases('aedes', { brokerNodes: 2 }));
describe('the order saga on Mosquitto', { skip: requireProgram('mosquitto') }, () => sagaCases('mosquitto'));

function sagaCases(broker: BrokerKind, options: Pick<StackOptions, 'brokerNodes'> = {}) {
  let stack: Stack;
  const final = (id: string) =>
    eventually(
      async () => {
        const o = await getJson<Order>(`${stack.urls.orders}/api/orders/${id}`);
        return o.status !== 'pending' && o;
      },
      { what: `order ${id} to leave pending` },
    );
  const erpRecord = (id: string) => fetch(`${stack.urls.erp}/erp/records/order:${id}`).then(async (r) => ({ status: r.status, body: (await r.json()) as { reference?: string } }));
  const reservation = (id: string) => getJson<{ status: string }>(`${stack.urls.stock}/api/stock/reservations/${id}`);

  before(async () => {
    stack = await startStack({
      ...options,
      broker,
      erpCapacityRu: 2000,
      stock: { 'wooden-train': 10, 'chess-set': 5, 'yo-yo': 3, 'rocking-horse': 1, 'tea-set': 20 },
    });
  });
  after(async () => {
    await stack?.stop();
  });

  it('confirms an order in stock: the stock goes down, the ERP has it', async () => {
    const res = await post(stack.urls.orders, { customer: customer('ada'), items: [{ productId: 'wooden-train', quantity: 2 }] });
    assert.equal(res.status, 202);
    const order = await final(res.body.id);
    assert.equal(order.status, 'confirmed');
    assert.deepEqual(order.history.map((h) => h.status), ['pending', 'confirmed']);
    assert.equal((await erpRecord(order.id)).body.reference, order.erpReference);
    // Sold: the units leave the reservation for good.
    await eventually(async () => (await reservation(order.id)).status === 'sold', { what: 'reservation sold' });
    assert.deepEqual(await getStock(stack.urls.stock, 'wooden-train').then(({ available, reserved }) => ({ available, reserved })), { available: 8, reserved: 0 });
  });

  it('rejects an order for more than the stock: no stock change, nothing in the ERP', async () => {
    const before = (await getJson<ErpStats>(`${stack.urls.erp}/erp/stats`)).records.order ?? 0;
    const res = await post(stack.urls.orders, {
      customer: customer('bob'),
      // All or none: the tea sets are there, the chess sets are not, so neither is reserved.
      items: [
        { productId: 'tea-set', quantity: 2 },
        { productId: 'chess-set', quantity: 6 },
      ],
    });
    const order = await final(res.body.id);
    assert.equal(order.status, 'rejected');
    assert.match(order.reason ?? '', /not enough chess-set: 6 requested, 5 available/);
    assert.equal((await reservation(order.id)).status, 'rejected');
    assert.equal((await getStock(stack.urls.stock, 'chess-set')).available, 5);
    assert.deepEqual(await getStock(stack.urls.stock, 'tea-set').then(({ available, reserved }) => ({ available, reserved })), { available: 20, reserved: 0 });
    assert.equal((await erpRecord(order.id)).status, 404);
    assert.equal((await getJson<ErpStats>(`${stack.urls.erp}/erp/stats`)).records.order ?? 0, before);
  });

  it('rejects an order for a product the stock does not know', async () => {
    const res = await post(stack.urls.orders, { customer: customer('cy'), items: [{ productId: 'no-such-toy', quantity: 1 }] });
    const order = await final(res.body.id);
    assert.equal(order.status, 'rejected');
    assert.match(order.reason ?? '', /unknown product no-such-toy/);
  });

  it('gives the stock back when the ERP refuses the order (compensation)', async () => {
    const res = await post(stack.urls.orders, { customer: customer('mallory', 'blocked.example'), items: [{ productId: 'yo-yo', quantity: 2 }] });
    const order = await final(res.body.id);
    assert.equal(order.status, 'rejected');
    assert.match(order.reason ?? '', /credit check/);
    await eventually(async () => (await reservation(order.id)).status === 'released', { what: 'reservation released' });
    assert.deepEqual(await getStock(stack.urls.stock, 'yo-yo').then(({ available, reserved }) => ({ available, reserved })), { available: 3, reserved: 0 });
    assert.equal((await erpRecord(order.id)).status, 404);
  });

  it('creates one order for the same body posted twice with one Idempotency-Key', async () => {
    const body = { customer: customer('dora'), items: [{ productId: 'tea-set', quantity: 1 }] };
    const key = `dora-${Date.now()}`;
    const first = await post(stack.urls.orders, body, { 'idempotency-key': key });
    // The same body with its keys in another order is the same body.
    const again = await post(stack.urls.orders, { items: body.items, customer: { email: body.customer.email, name: body.customer.name } }, { 'idempotency-key': key });
    assert.equal(first.status, 202);
    assert.equal(again.status, 202);
    assert.equal(again.body.id, first.body.id);
    assert.equal(again.location, first.location);
    assert.equal(again.replayed, 'true');
    const clash = await post(stack.urls.orders, { ...body, items: [{ productId: 'tea-set', quantity: 2 }] }, { 'idempotency-key': key });
    assert.equal(clash.status, 422);
    assert.equal((await final(first.body.id)).status, 'confirmed');
    await eventually(async () => (await reservation(first.body.id)).status === 'sold', { what: 'reservation sold' });
    assert.equal((await getStock(stack.urls.stock, 'tea-set')).available, 19, 'one unit, reserved once');
    const recent = await getJson<{ items: Order[] }>(`${stack.urls.orders}/api/orders?limit=100`, { 'x-api-key': ADMIN_KEY });
    assert.equal(recent.items.filter((o) => (o as unknown as { customer: { email: string } }).customer.email === body.customer.email).length, 1);
  });

  it('lets exactly one of several concurrent orders have the last unit', async () => {
    const bodies = Array.from({ length: 8 }, (_, i) => ({ customer: customer(`racer${i}`), items: [{ productId: 'rocking-horse', quantity: 1 }] }));
    const posted = await Promise.all(bodies.map((b) => post(stack.urls.orders, b)));
    assert.ok(posted.every((p) => p.status === 202));
    const orders = await Promise.all(posted.map((p) => final(p.body.id)));
    const winners = orders.filter((o) => o.status === 'confirmed');
    assert.equal(winners.length, 1, 'exactly one order gets the last rocking horse');
    for (const loser of orders.filter((o) => o.status === 'rejected')) assert.match(loser.reason ?? '', /not enough rocking-horse/);
    await eventually(async () => (await reservation(winners[0]!.id)).status === 'sold', { what: 'reservation sold' });
    assert.deepEqual(await getStock(stack.urls.stock, 'rocking-horse').then(({ available, reserved }) => ({ available, reserved })), { available: 0, reserved: 0 });
    const inErp = await Promise.all(orders.map((o) => erpRecord(o.id)));
    assert.equal(inErp.filter((r) => r.status === 200).length, 1);
  });

  it('keeps each level on a retained topic, so a display sees it the moment it subscribes', async () => {
    const expected = await getStock(stack.urls.stock, 'wooden-train');
    // Mosquitto has no anonymous access: there the display logs in as the read-only viewer.
    const viewer = broker === 'mosquitto' ? { username: 'viewer', password: devCredentials(stack.dataDir).viewer } : {};
    // On the last node: with two, not the one the stock service publishes on.
    const display = await mqtt.connectAsync(stack.brokerUrls.at(-1)!.mqtt, { clientId: 'viewer-saga-display', clean: true, ...viewer });
    try {
      const level = await eventually(async () => {
        const got = new Promise<{ data: { available: number; reserved: number } }>((resolve) => {
          display.once('message', (_topic, payload) => resolve(JSON.parse(payload.toString()) as { data: { available: number; reserved: number } }));
        });
        await display.subscribeAsync(stockLevelTopic('wooden-train'), { qos: 1 });
        const event = await Promise.race([got, new Promise<undefined>((r) => setTimeout(r, 1000))]);
        await display.unsubscribeAsync(stockLevelTopic('wooden-train'));
        return event && event.data.available === expected.available && event.data;
      }, { what: 'retained level matching the API' });
      assert.deepEqual({ available: level.available, reserved: level.reserved }, { available: expected.available, reserved: expected.reserved });
    } finally {
      await display.endAsync();
    }
  });
}
