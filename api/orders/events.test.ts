// GET /api/orders/{id}/events in process (the app and a real SQLite store, no socket): history at
// once, each change as it is committed, the end once final, Last-Event-ID, the bound, heartbeats,
// a client that leaves and the shutdown. test/order-events.test.ts runs it through nginx.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../lib/log.js';
import { createMetrics } from '../../lib/metrics.js';
import { eventually } from '../../harness/process.js';
import { dataOf, readSse } from '../../test/support/sse.js';
import { createOrdersApp } from './app.js';
import { OrderStreams, type OrderStreamsOptions } from './events.js';
import { OrderStore } from './store.js';

const newOrder = { customer: { name: 'Ada', email: 'ada@example.com' }, items: [{ productId: 'wooden-train', quantity: 1 }] };

function setup(options: OrderStreamsOptions = {}) {
  const store = new OrderStore(':memory:');
  const streams = new OrderStreams(store, options);
  const app = createOrdersApp({ store, streams, log: createLogger('orders', 'silent'), metrics: createMetrics('orders'), ready: () => ({}) });
  const place = () => {
    const r = store.create(newOrder);
    assert.equal(r.kind, 'created');
    return r.kind === 'created' ? r.order.id : '';
  };
  const open = async (id: string, headers: Record<string, string> = {}) => app.request(`/api/orders/${id}/events`, { headers });
  let n = 0;
  const confirm = (id: string) => store.applyOutcome(`event-${++n}`, id, 'confirmed', { erpReference: `ERP-${n}` });
  return { store, streams, app, place, open, confirm };
}

describe('order event streams', () => {
  it('sends the history at once, then each change, and ends once the order is final', async () => {
    const { place, open, confirm, streams } = setup();
    const id = place();
    const res = await open(id);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.equal(res.headers.get('x-accel-buffering'), 'no');
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    const sse = readSse(res);
    const [first] = await sse.waitForEvents(1, 'the pending step');
    assert.deepEqual({ event: first!.event, id: first!.id }, { event: 'status', id: '1' });
    assert.equal(sse.isEnded(), false, 'a pending order keeps its stream open');
    assert.equal(confirm(id), 'applied');
    await sse.ended;
    assert.deepEqual(sse.events.map((e) => e.id), ['1', '2']);
    assert.deepEqual(dataOf(sse.events).map((d) => [d.orderId, d.seq, d.status, d.detail]), [
      [id, 1, 'pending', null],
      [id, 2, 'confirmed', 'ERP-1'],
    ]);
    await eventually(() => streams.size === 0, { what: 'the stream to be released' });
  });

  it('replays a final order whole, then answers 204 to a reconnect that has everything', async () => {
    const { place, open, confirm } = setup();
    const id = place();
    confirm(id);
    const sse = readSse(await open(id));
    await sse.ended;
    assert.deepEqual(dataOf(sse.events).map((d) => d.status), ['pending', 'confirmed']);
    const again = await open(id, { 'last-event-id': '2' });
    assert.equal(again.status, 204);
  });

  it('resumes after Last-Event-ID without sending anything twice', async () => {
    const { place, open, confirm } = setup();
    const id = place();
    const sse = readSse(await open(id, { 'last-event-id': '1' }));
    assert.equal(sse.status, 200);
    confirm(id);
    await sse.ended;
    assert.deepEqual(sse.events.map((e) => [e.id, JSON.parse(e.data).status]), [['2', 'confirmed']]);
  });

  it('refuses what it cannot serve with a problem', async () => {
    const { place, open } = setup();
    const id = place();
    const cases: [string, Record<string, string>, number][] = [
      ['not-a-uuid', {}, 400],
      ['0b7e6c1e-3f0a-4c8e-9d7b-2a5f4e1c9d30', {}, 404],
      [id, { 'last-event-id': 'abc' }, 400],
      [id, { 'last-event-id': '7' }, 422],
    ];
    for (const [orderId, headers, status] of cases) {
      const res = await open(orderId, headers);
      assert.equal(res.status, status, `${orderId} ${JSON.stringify(headers)}`);
      assert.equal(res.headers.get('content-type'), 'application/problem+json');
    }
  });

  it('bounds the streams open at once and frees a place when one ends', async () => {
    const { place, open, confirm } = setup({ max: 1 });
    const a = place();
    const first = readSse(await open(a));
    await first.waitForEvents(1);
    const refused = await open(place());
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '5');
    confirm(a);
    await first.ended;
    const later = readSse(await open(place()));
    assert.equal(later.status, 200);
    await later.cancel();
  });

  it('keeps an idle stream alive with comment lines', async () => {
    const { place, open } = setup({ heartbeatMs: 100 });
    const sse = readSse(await open(place()));
    await eventually(() => sse.comments.length >= 2, { what: 'two heartbeats' });
    assert.deepEqual(sse.events.length, 1, 'heartbeats are comments, not events');
    await sse.cancel();
  });

  it('answers HEAD without opening a stream', async () => {
    const { place, app, streams } = setup({ max: 1 });
    const res = await app.request(`/api/orders/${place()}/events`, { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.equal(streams.size, 0);
  });

  it('lets go of a stream whose client left', async () => {
    const { place, open, streams, store } = setup();
    const sse = readSse(await open(place()));
    await sse.waitForEvents(1);
    assert.equal(streams.size, 1);
    await sse.cancel();
    await eventually(() => streams.size === 0 && store.changes.watched === 0, { what: 'the stream and its watch to go' });
  });

  it('ends every stream at shutdown and opens no new one', async () => {
    const { place, open, streams } = setup();
    const readers = [readSse(await open(place())), readSse(await open(place()))];
    await Promise.all(readers.map((r) => r.waitForEvents(1)));
    await streams.close();
    await Promise.all(readers.map((r) => r.ended));
    assert.equal(streams.size, 0);
    assert.equal((await open(place())).status, 503);
  });
});
