// The catalog API in-process (app.request, in-memory SQLite): pagination, filters, validation, the
// admin API key, and the outbox event behind every change.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCatalogApp } from './app.js';
import { seedProducts } from '../../lib/seed-products.js';
import { CatalogStore } from './store.js';
import { createLogger } from '../../lib/log.js';
import { createMetrics } from '../../lib/metrics.js';
import { assertAnnouncedOnce } from '../../test/support/public-topics.js';
import { productTopic } from '../../lib/topics.js';

const KEY = 'catalog-test-key-0123456789';

function setup({ admin = true } = {}) {
  const adminApiKey = admin ? KEY : undefined;
  const store = new CatalogStore(':memory:');
  const app = createCatalogApp({ store, log: createLogger('catalog-test', 'silent'), metrics: createMetrics('catalog-test'), ready: () => ({ database: true }), adminApiKey });
  return { store, app };
}

interface Page {
  items: { id: string; category: string; priceCents: number; name: string; active: boolean }[];
  nextCursor: string | null;
}

const json = (body: unknown, headers: Record<string, string> = {}) => ({ headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

describe('catalog API', () => {
  it('seeds the catalogue once and pages through it with a cursor, in id order, without repeats', async () => {
    const { app, store } = setup();
    assert.ok(seedProducts.length >= 30, 'a few dozen toys');
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 20; pages++) {
      const res = await app.request(`/api/catalog/products?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
      assert.equal(res.status, 200);
      const page = (await res.json()) as Page;
      assert.ok(page.items.length <= 7);
      seen.push(...page.items.map((p) => p.id));
      cursor = page.nextCursor;
      if (!cursor) break;
    }
    assert.equal(cursor, null, 'the last page says so');
    assert.deepEqual(seen, seedProducts.map((p) => p.id).sort());
    assert.equal((store.db.prepare('SELECT count(*) AS n FROM outbox WHERE topic LIKE ?').get(productTopic('%')) as { n: number }).n, seedProducts.length);
  });

  it('filters by category, price range and words', async () => {
    const { app } = setup();
    const vehicles = (await (await app.request('/api/catalog/products?category=vehicles&limit=100')).json()) as Page;
    assert.ok(vehicles.items.length > 0 && vehicles.items.every((p) => p.category === 'vehicles'));
    const cheap = (await (await app.request('/api/catalog/products?minPrice=500&maxPrice=1000&limit=100')).json()) as Page;
    assert.ok(cheap.items.length > 0 && cheap.items.every((p) => p.priceCents >= 500 && p.priceCents <= 1000));
    const train = (await (await app.request('/api/catalog/products?q=LOCOMOTIVE')).json()) as Page;
    assert.deepEqual(train.items.map((p) => p.id), ['wooden-train']);
    const none = (await (await app.request('/api/catalog/products?q=%25')).json()) as Page;
    assert.deepEqual(none.items, [], 'LIKE wildcards in q are literal');
  });

  it('answers bad queries with a 400 problem', async () => {
    const { app } = setup();
    for (const query of ['limit=0', 'limit=101', 'limit=abc', 'minPrice=-1', 'category=Not%20Valid', 'cursor=Not-A-Key', 'active=maybe']) {
      const res = await app.request(`/api/catalog/products?${query}`);
      assert.equal(res.status, 400, query);
      assert.equal(res.headers.get('content-type'), 'application/problem+json', query);
    }
  });

  it('gets one product, or a 404 problem', async () => {
    const { app } = setup();
    assert.equal(((await (await app.request('/api/catalog/products/wooden-train')).json()) as { name: string }).name, 'Wooden train');
    const missing = await app.request('/api/catalog/products/no-such-toy');
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get('content-type'), 'application/problem+json');
    assert.equal((await app.request('/api/catalog/products/Bad_Id')).status, 400);
  });

  it('lets only an admin with the API key create and change products, and announces each change', async () => {
    const { app, store } = setup();
    const whale = { id: 'wooden-whale', name: 'Wooden whale', category: 'baby', priceCents: 1590 };
    assert.equal((await app.request('/api/catalog/products', { method: 'POST', ...json(whale) })).status, 401);
    const wrong = await app.request('/api/catalog/products', { method: 'POST', ...json(whale, { 'x-api-key': `${KEY}x` }) });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.get('content-type'), 'application/problem+json');
    const created = await app.request('/api/catalog/products', { method: 'POST', ...json(whale, { 'x-api-key': KEY }) });
    assert.equal(created.status, 201);
    assert.equal(created.headers.get('location'), '/api/catalog/products/wooden-whale');
    assert.equal((await app.request('/api/catalog/products', { method: 'POST', ...json(whale, { authorization: `Bearer ${KEY}` }) })).status, 409);
    assert.equal((await app.request('/api/catalog/products', { method: 'POST', ...json({ ...whale, id: 'x', priceCents: -1 }, { 'x-api-key': KEY }) })).status, 400);

    const patched = await app.request('/api/catalog/products/wooden-whale', { method: 'PATCH', ...json({ priceCents: 1490, active: false }, { 'x-api-key': KEY }) });
    assert.equal(patched.status, 200);
    assert.deepEqual(((await patched.json()) as { priceCents: number; active: boolean; name: string }).priceCents, 1490);
    assert.equal((await app.request('/api/catalog/products/wooden-whale', { method: 'PATCH', ...json({}, { 'x-api-key': KEY }) })).status, 400);
    assert.equal((await app.request('/api/catalog/products/no-such-toy', { method: 'PATCH', ...json({ priceCents: 1 }, { 'x-api-key': KEY }) })).status, 404);
    assert.equal((await app.request('/api/catalog/products/wooden-whale', { method: 'PATCH', ...json({ priceCents: 1 }) })).status, 401);
    const inactive = (await (await app.request('/api/catalog/products?active=false')).json()) as Page;
    assert.deepEqual(inactive.items.map((p) => p.id), ['wooden-whale']);

    const events = store.db.prepare('SELECT payload, retain FROM outbox WHERE topic = ? ORDER BY id').all(productTopic('wooden-whale')) as { payload: string; retain: number }[];
    assert.equal(events.length, 2, 'created, then changed');
    const last = JSON.parse(events[1]!.payload) as { type: string; data: { priceCents: number; active: boolean } };
    assert.equal(last.type, 'woodytoys.catalog.product-changed');
    assert.deepEqual([last.data.priceCents, last.data.active, events[1]!.retain], [1490, false, 1]);
  });

  it('disables the admin routes with a 503 problem when no ADMIN_API_KEY is set', async () => {
    const { app } = setup({ admin: false });
    const res = await app.request('/api/catalog/products', { method: 'POST', ...json({ id: 'x' }, { 'x-api-key': 'anything' }) });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.equal((await app.request('/api/catalog/products')).status, 200, 'reading still works');
  });
});

describe('products on their public topics', () => {
  it('are announced once when a database from before the public namespace opens, and not again', () => {
    assertAnnouncedOnce({ open: (file) => new CatalogStore(file), topics: productTopic('%'), seeded: seedProducts.length, metaTable: 'catalog_meta' });
  });
});
