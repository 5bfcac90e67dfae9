// End to end on the embedded default: orders go HTTP → outbox → broker → worker → ERP → back.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { scrape } from '../harness/metrics.js';
import { eventually } from '../harness/process.js';
import { getJson, postOrder, sampleOrder, startStack, type Stack } from '../harness/stack.js';

interface ErpStats {
  accepted: number;
  duplicates: number;
  records: Record<string, number>;
}

describe('an order travels the whole system', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ erpCapacityRu: 1000, stock: { 'wooden-train': 10_000 } });
  });
  after(async () => {
    await stack?.stop();
  });

  it('confirms 200 orders, each recorded exactly once in the ERP', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) {
      const res = await postOrder(stack.urls.orders, sampleOrder(i));
      assert.equal(res.status, 202);
      assert.equal(res.location, `/api/orders/${res.body.id}`);
      ids.push(res.body.id!);
    }
    for (const id of ids) {
      const order = await eventually(
        async () => {
          const o = await getJson<{ status: string; history: { status: string }[]; erpReference: string }>(`${stack.urls.orders}/api/orders/${id}`);
          return o.status !== 'pending' && o;
        },
        { what: `order ${id} to leave pending` },
      );
      assert.equal(order.status, 'confirmed');
      assert.deepEqual(order.history.map((h) => h.status), ['pending', 'confirmed']);
      const record = await getJson<{ operationId: string; reference: string }>(`${stack.urls.erp}/erp/records/order:${id}`);
      assert.equal(record.reference, order.erpReference);
    }
    const stats = await getJson<ErpStats>(`${stack.urls.erp}/erp/stats`);
    assert.equal(stats.records.order, 200);
    assert.equal(stats.accepted, 200);
    assert.equal(stats.duplicates, 0, 'no order reached the ERP twice');
  });

  it('answers a refused order with rejected and the reason', async () => {
    const res = await postOrder(stack.urls.orders, { customer: { name: 'Mallory', email: 'mallory@blocked.example' }, items: [{ productId: 'wooden-train', quantity: 1 }] });
    assert.equal(res.status, 202);
    const order = await eventually(async () => {
      const o = await getJson<{ status: string; reason: string }>(`${stack.urls.orders}/api/orders/${res.body.id}`);
      return o.status !== 'pending' && o;
    });
    assert.equal(order.status, 'rejected');
    assert.match(order.reason, /credit check/);
  });
});

describe('a broker outage', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ erpCapacityRu: 1000, stock: { 'wooden-train': 10_000 } });
  });
  after(async () => {
    await stack?.stop();
  });

  it('still accepts orders while the broker is down and confirms them once it is back', async () => {
    const ids: string[] = [];
    const post = async (n: number) => {
      const res = await postOrder(stack.urls.orders, sampleOrder(n));
      assert.equal(res.status, 202, `order ${n} must be accepted`);
      ids.push(res.body.id!);
    };
    for (let i = 0; i < 20; i++) await post(i);
    await stack.broker.stop();
    for (let i = 20; i < 60; i++) await post(i);
    const pendingWhileDown = await getJson<{ status: string }>(`${stack.urls.orders}/api/orders/${ids.at(-1)}`);
    assert.equal(pendingWhileDown.status, 'pending');
    await stack.startBroker();
    for (let i = 60; i < 80; i++) await post(i);
    await eventually(
      async () => {
        const orders = await Promise.all(ids.map((id) => getJson<{ status: string }>(`${stack.urls.orders}/api/orders/${id}`)));
        return orders.every((o) => o.status === 'confirmed');
      },
      { timeoutMs: 60_000, what: 'every order confirmed after the outage' },
    );
    const stats = await getJson<ErpStats>(`${stack.urls.erp}/erp/stats`);
    assert.equal(stats.records.order, ids.length);
  });
});

describe('several workers in the shared subscription', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ workers: 3, erpCapacityRu: 3000, stock: { 'wooden-train': 10_000 } });
  });
  after(async () => {
    await stack?.stop();
  });

  it('split the orders between them, none processed twice', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 150; i++) {
      const res = await postOrder(stack.urls.orders, sampleOrder(i));
      assert.equal(res.status, 202);
      ids.push(res.body.id!);
    }
    await eventually(
      async () => (await Promise.all(ids.map((id) => getJson<{ status: string }>(`${stack.urls.orders}/api/orders/${id}`)))).every((o) => o.status === 'confirmed'),
      { timeoutMs: 60_000, what: 'all 150 orders confirmed' },
    );
    const stats = await getJson<ErpStats>(`${stack.urls.erp}/erp/stats`);
    assert.equal(stats.records.order, 150);
    assert.equal(stats.accepted, 150);
    assert.equal(stats.duplicates, 0, 'no order reached the ERP twice');
    // Each worker handled a share, and together exactly the orders: no message was handled twice.
    const handled = await Promise.all(
      stack.workers.map(async (w) => {
        const url = String(w.logs.find((l) => l.msg === 'worker listening')?.http);
        return (await scrape(`${url}/metrics`))('worker_messages_total', 'workflow="orders"', 'outcome="ok"') ?? 0;
      }),
    );
    assert.ok(handled.every((n) => n > 0), `every worker took a share: ${handled.join(', ')}`);
    assert.equal(handled.reduce((a, b) => a + b, 0), 150, `handled in all: ${handled.join(', ')}`);
  });
});
