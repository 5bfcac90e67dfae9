// The orders API in-process (app.request, in-memory SQLite): Idempotency-Key, the paginated list, the timeline.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createOrdersApp } from './app.js';
import { OrderStore } from './store.js';
import { createLogger } from '../../lib/log.js';
import { createMetrics } from '../../lib/metrics.js';
import { hop } from '../../lib/timeline.js';
import { publicOrderRef } from '../../lib/topics.js';

const KEY = 'orders-admin-key-0123456789';
const asAdmin = { headers: { 'x-api-key': KEY } };

function setup() {
  const store = new OrderStore(':memory:');
  const app = createOrdersApp({ store, log: createLogger('orders-test', 'silent'), metrics: createMetrics('orders-test'), ready: () => ({ database: true }), adminApiKey: KEY });
  const events = () => (store.db.prepare("SELECT count(*) AS n FROM outbox WHERE topic = 'woodytoys/orders/created'").get() as { n: number }).n;
  return { store, app, events };
}

const body = (n = 1, quantity = 1) => ({ customer: { name: `C${n}`, email: `c${n}@example.com` }, items: [{ productId: 'wooden-train', quantity }] });
const send = (app: ReturnType<typeof setup>['app'], payload: unknown, key?: string) =>
  app.request('/api/orders', { method: 'POST', headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) }, body: JSON.stringify(payload) });

describe('orders API: Idempotency-Key', () => {
  it('answers a repeated request like the first time and creates one order', async () => {
    const { app, events } = setup();
    const first = await send(app, body(), 'key-1');
    const again = await send(app, body(), 'key-1');
    assert.equal(first.status, 202);
    assert.equal(again.status, 202);
    assert.equal(again.headers.get('location'), first.headers.get('location'));
    assert.equal(((await again.json()) as { id: string }).id, ((await first.json()) as { id: string }).id);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(events(), 1, 'one order, one event');
  });

  it('refuses the same key with a different body (422), and keeps keys apart', async () => {
    const { app, events } = setup();
    await send(app, body(1, 1), 'key-2');
    const clash = await send(app, body(1, 2), 'key-2');
    assert.equal(clash.status, 422);
    assert.equal(clash.headers.get('content-type'), 'application/problem+json');
    assert.equal((await send(app, body(1, 2), 'key-3')).status, 202);
    assert.equal((await send(app, body(1, 2))).status, 202, 'no key, a new order');
    assert.equal(events(), 3);
  });

  it('rejects a malformed key or body with a 400 before using the key', async () => {
    const { app, events } = setup();
    assert.equal((await send(app, body(), 'x'.repeat(256))).status, 400);
    assert.equal((await send(app, body(), 'has space')).status, 400);
    assert.equal((await send(app, { customer: body().customer, items: [] }, 'key-4')).status, 400);
    assert.equal((await send(app, body(), 'key-4')).status, 202, 'the key was not taken by the invalid request');
    assert.equal(events(), 1);
  });
});

describe('orders API: list', () => {
  it('pages through orders newest first, filtered by status', async () => {
    const { app, store } = setup();
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(((await (await send(app, body(i))).json()) as { id: string }).id);
    for (const id of ids.slice(0, 5)) store.applyOutcome(`e-${id}`, id, 'confirmed', { erpReference: 'r' });
    const walk = async (query: string) => {
      const seen: string[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 20; i++) {
        const res = await app.request(`/api/orders?limit=5${query}${cursor ? `&cursor=${cursor}` : ''}`, asAdmin);
        assert.equal(res.status, 200);
        const page = (await res.json()) as { items: { id: string; status: string }[]; nextCursor: string | null };
        seen.push(...page.items.map((o) => `${o.id}:${o.status}`));
        cursor = page.nextCursor;
        if (!cursor) break;
      }
      return seen;
    };
    assert.deepEqual(await walk(''), ids.map((id, i) => `${id}:${i < 5 ? 'confirmed' : 'pending'}`).reverse());
    assert.deepEqual(await walk('&status=confirmed'), ids.slice(0, 5).map((id) => `${id}:confirmed`).reverse());
    assert.deepEqual(await walk('&status=rejected'), []);
    for (const bad of ['status=lost', 'limit=0', 'cursor=%21%21']) assert.equal((await app.request(`/api/orders?${bad}`, asAdmin)).status, 400, bad);
  });

  it('is the back office\u2019s: every customer\u2019s name and e-mail, so the admin key is required', async () => {
    const { app } = setup();
    const placed = (await (await send(app, body(7))).json()) as { id: string };
    const stranger = await app.request('/api/orders');
    assert.equal(stranger.status, 401);
    assert.doesNotMatch(await stranger.text(), /c7@example\.com/);
    assert.equal((await app.request('/api/orders', { headers: { 'x-api-key': `${KEY}x` } })).status, 401);
    const own = await app.request(`/api/orders/${placed.id}`);
    assert.equal(own.status, 200, 'an order stays readable by its id (its Location)');
  });
});

describe('orders API: timeline', () => {
  type Timeline = { ref: string; traceId: string | null; hops: { name: string; service: string; start: string; durationMs: number | null; detail?: Record<string, unknown> }[] };
  const names = (t: Timeline) => t.hops.map((h) => `${h.service}: ${h.name}`);

  it("keeps the accept, the outbox publish once acknowledged, and each outcome's hops once, by id or public reference", async () => {
    const { app, store } = setup();
    const { id } = (await (await send(app, body())).json()) as { id: string };
    let timeline = (await (await app.request(`/api/orders/${id}/timeline`)).json()) as Timeline;
    assert.deepEqual(names(timeline), ['orders: accept', 'orders: outbox publish']);
    assert.equal(timeline.hops[1]!.durationMs, null, 'under way until the broker acknowledges it');

    const { outbox } = store.db.prepare<[], { outbox: number }>("SELECT id AS outbox FROM outbox WHERE topic = 'woodytoys/orders/created'").get()!;
    store.db.transaction(() => store.timelines.published([outbox], Date.now() + 5))();
    // The trace the order was accepted in (a client's traceparent; none in-process here).
    store.db.prepare('UPDATE order_timeline SET trace_id = ?').run('0af7651916cd43dd8448eb211c80319c');
    const start = Date.now() + 10;
    const carried = [
      hop('wait in queue', 'stock', start, start + 3, { topic: 'woodytoys/orders/created' }),
      hop('erp attempt', 'worker', start + 5, start + 7, { attempt: 1, result: 'unavailable', error: 'ERP said: bad address for ada@example.com' }),
      hop('erp attempt', 'worker', start + 8, start + 9, { attempt: 2, status: 201 }),
    ];
    assert.equal(store.applyOutcome('outcome-1', id, 'confirmed', { erpReference: 'ERP-1' }, () => carried), 'applied');
    assert.equal(store.applyOutcome('outcome-1', id, 'confirmed', { erpReference: 'ERP-1' }, () => carried), 'duplicate');
    timeline = (await (await app.request(`/api/orders/${id}/timeline`)).json()) as Timeline;
    assert.deepEqual(names(timeline), ['orders: accept', 'orders: outbox publish', 'stock: wait in queue', 'worker: erp attempt', 'worker: erp attempt'], 'once, oldest first');
    assert.ok((timeline.hops[1]!.durationMs ?? -1) >= 0);
    assert.equal(timeline.ref, publicOrderRef(id));
    assert.equal(timeline.traceId, '0af7651916cd43dd8448eb211c80319c');

    // By public reference (known to anyone watching the public topics): the same hops, without the
    // trace id and without what an ERP error said.
    const byRef = (await (await app.request(`/api/orders/${publicOrderRef(id)}/timeline`)).json()) as Timeline;
    assert.equal(byRef.traceId, null);
    assert.equal(timeline.hops[3]!.detail!.error, 'ERP said: bad address for ada@example.com');
    assert.deepEqual(byRef.hops[3]!.detail, { attempt: 1, result: 'unavailable' });
    assert.deepEqual(
      byRef.hops,
      timeline.hops.map((h, i) => (i === 3 ? { ...h, detail: { attempt: 1, result: 'unavailable' } } : h)),
    );

    // A UUID is the same in upper case (the documented pattern takes both): the same order.
    const upper = await app.request(`/api/orders/${id.toUpperCase()}/timeline`);
    assert.equal(upper.status, 200);
    assert.deepEqual(await upper.json(), timeline);
    const order = await app.request(`/api/orders/${id.toUpperCase()}`, asAdmin);
    assert.equal(order.status, 200);
    assert.equal(((await order.json()) as { id: string }).id, id);
  });

  it('answers 404 for an unknown order and 400 for a malformed id, as problems', async () => {
    const { app } = setup();
    for (const [path, status] of [
      ['/api/orders/0b7e6c1e-3f0a-4c8e-9d7b-2a5f4e1c9d30/timeline', 404],
      ['/api/orders/0123456789abcdef/timeline', 404],
      ['/api/orders/0123456789ABCDEF/timeline', 400],
      ['/api/orders/x/timeline', 400],
    ] as const) {
      const res = await app.request(path);
      assert.equal(res.status, status, path);
      assert.equal(res.headers.get('content-type'), 'application/problem+json');
    }
  });
});
