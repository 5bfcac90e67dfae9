// Every admin route refuses a missing or wrong key, whichever way it is sent. The routes come from
// the services' own OpenAPI documents (each operation marked with the admin security scheme), so a
// new admin route that forgot its middleware fails here. In-process apps, in-memory SQLite.
// (api/catalog/app.test.ts and api/stock/app.test.ts check the right key works, route by route.)
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCatalogApp } from '../api/catalog/app.js';
import { CatalogStore } from '../api/catalog/store.js';
import { createDeadLetterApp } from '../api/deadletters/app.js';
import { DeadLetterStore } from '../api/deadletters/store.js';
import { createOrdersApp } from '../api/orders/app.js';
import { OrderStore } from '../api/orders/store.js';
import { createStockApp } from '../api/stock/app.js';
import { StockStore } from '../api/stock/store.js';
import { createRoute } from '@hono/zod-openapi';
import { requireAdminKey, withAdminKey } from '../lib/admin-key.js';
import { adminSecurity } from '../lib/api-docs.js';
import { createLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';

const KEY = 'admin-auth-test-key-0123456789';
const common = (name: string) => ({ log: createLogger(name, 'silent'), metrics: createMetrics(name), ready: () => ({ database: true }) });

interface Doc {
  paths: Record<string, Record<string, { security?: unknown[] }>>;
}

const services = [
  { name: 'catalog', doc: '/api/catalog/openapi.json', app: createCatalogApp({ store: new CatalogStore(':memory:'), adminApiKey: KEY, ...common('admin-catalog') }) },
  { name: 'stock', doc: '/api/stock/openapi.json', app: createStockApp({ store: new StockStore(':memory:'), adminApiKey: KEY, importMaxBytes: 1 << 20, importMaxMovements: 1000, ...common('admin-stock') }) },
  { name: 'deadletters', doc: '/api/deadletters/openapi.json', app: createDeadLetterApp({ store: new DeadLetterStore(':memory:'), adminApiKey: KEY, ...common('admin-deadletters') }) },
  { name: 'orders', doc: '/api/orders/openapi.json', app: createOrdersApp({ store: new OrderStore(':memory:'), adminApiKey: KEY, ...common('admin-orders') }) },
];

const wrongKeys: [string, Record<string, string>][] = [
  ['no key', {}],
  ['an empty X-API-Key', { 'x-api-key': '' }],
  ['a wrong X-API-Key', { 'x-api-key': `${KEY}x` }],
  ['a prefix of the key', { 'x-api-key': KEY.slice(0, -1) }],
  ['the key in another case', { 'x-api-key': KEY.toUpperCase() }],
  ['a wrong Bearer token', { authorization: 'Bearer not-the-key-at-all' }],
  ['the key under another scheme', { authorization: `Basic ${KEY}` }],
];

describe('admin routes refuse missing or wrong keys', () => {
  let adminRoutes = 0;
  for (const { name, doc, app } of services) {
    it(`${name}: every operation with the admin scheme answers 401 problem+json`, async () => {
      const spec = (await (await app.request(doc)).json()) as Doc;
      for (const [path, methods] of Object.entries(spec.paths)) {
        for (const [method, op] of Object.entries(methods)) {
          if (!op.security?.length) continue;
          adminRoutes++;
          const url = path.replace(/\{[^}]+\}/g, 'wooden-train');
          for (const [what, headers] of wrongKeys) {
            const read = method === 'get';
            const res = await app.request(url, { method: method.toUpperCase(), headers: { 'content-type': 'application/json', ...headers }, body: read ? undefined : '{}' });
            assert.equal(res.status, 401, `${method.toUpperCase()} ${path} with ${what}`);
            assert.match(res.headers.get('content-type') ?? '', /application\/problem\+json/);
          }
        }
      }
    });
  }
  it('found the admin routes (catalog: create, change; stock: set, adjust, import; orders: the list; every dead-letter route)', () => {
    assert.ok(adminRoutes >= 11, `${adminRoutes} admin operations`);
  });
});

describe('withAdminKey', () => {
  const check = requireAdminKey(KEY, createLogger('admin-guard', 'silent'));
  const route = (security?: typeof adminSecurity) => createRoute({ method: 'post', path: '/api/things', ...(security ? { security } : {}), responses: { 204: { description: 'Done' } } });
  it('puts the key check in front of a route whose document names the admin scheme', () => {
    assert.deepEqual(withAdminKey(route(adminSecurity), check).middleware, [check]);
  });
  it('refuses, at start-up, an admin route whose document does not say so', () => {
    assert.throws(() => withAdminKey(route(), check), /POST \/api\/things takes the admin key but its document does not say so/);
  });
});
