// Each service's OpenAPI document is valid OpenAPI and lists every /api route the app serves.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compileErrors, validate } from '@readme/openapi-parser';
import { createCatalogApp } from '../api/catalog/app.js';
import { CatalogStore } from '../api/catalog/store.js';
import { createOrdersApp } from '../api/orders/app.js';
import { OrderStore } from '../api/orders/store.js';
import { createStockApp } from '../api/stock/app.js';
import { StockStore } from '../api/stock/store.js';
import { createLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';

const common = (name: string) => ({ log: createLogger(name, 'silent'), metrics: createMetrics(name), ready: () => ({}) });
const services = {
  catalog: () => createCatalogApp({ store: new CatalogStore(':memory:'), ...common('catalog'), adminApiKey: 'openapi-test-key-0123' }),
  stock: () => createStockApp({ store: new StockStore(':memory:'), ...common('stock'), adminApiKey: 'openapi-test-key-0123' }),
  orders: () => createOrdersApp({ store: new OrderStore(':memory:'), ...common('orders') }),
};

interface Doc {
  openapi: string;
  paths: Record<string, Record<string, unknown>>;
}

describe('OpenAPI documents', () => {
  for (const [name, build] of Object.entries(services)) {
    it(`${name}: /api/${name}/openapi.json is valid and lists every route`, async () => {
      const app = build();
      const res = await app.request(`/api/${name}/openapi.json`);
      assert.equal(res.status, 200);
      const doc = (await res.json()) as Doc;
      assert.match(doc.openapi, /^3\./);
      const result = await validate(structuredClone(doc) as never);
      assert.ok(result.valid, result.valid ? '' : compileErrors(result));

      const served = new Set(
        app.routes
          .filter((r) => r.method !== 'ALL' && r.path.startsWith(`/api/${name}`) && !r.path.endsWith('/openapi.json'))
          .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([A-Za-z]+)/g, '{$1}')}`),
      );
      const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`)));
      assert.ok(served.size >= 2);
      assert.deepEqual([...served].sort(), [...documented].sort());
    });
  }
});
