// The catalog HTTP API: anyone lists and reads products; admins (API key) create and change them.
import { createRoute, z } from '@hono/zod-openapi';
import { requireAdminKey, withAdminKey } from '../../lib/admin-key.js';
import { adminResponses, adminSecurity, cursors, nextCursor, nonBlank, pageOf, pageQuery, problemResponse, queryInteger, registerAdminScheme } from '../../lib/api-docs.js';
import { createApp, limitBody, problem, type Readiness } from '../../lib/http.js';
import type { Logger } from '../../lib/log.js';
import type { Metrics } from '../../lib/metrics.js';
import { productId } from '../../lib/topics.js';
import type { CatalogStore } from './store.js';

export interface CatalogAppOptions {
  store: CatalogStore;
  log: Logger;
  metrics: Metrics;
  ready: Readiness;
  /** Unset disables the admin routes (503). */
  adminApiKey?: string | undefined;
  /** Called after a change is committed, so the outbox relay publishes it without waiting to poll. */
  onChange?: () => void;
}

// The length as sent, then trimmed: what the document's maxLength and pattern say.
const name = z.string().max(120).trim().min(1).openapi(nonBlank);
const description = z.string().max(2000).trim().openapi({ description: 'surrounding white space is trimmed' });
const category = z.string().regex(/^[a-z0-9][a-z0-9-]{0,59}$/, 'lower-case letters, digits and dashes');
const priceCents = z.number().int().min(0).max(100_000_000);
const currency = z.string().regex(/^[A-Z]{3}$/, 'ISO 4217 code, e.g. EUR');

const ProductSchema = z
  .object({ id: productId, name, description, category, priceCents, currency, active: z.boolean(), createdAt: z.string(), updatedAt: z.string() })
  .openapi('Product');
const NewProductSchema = z
  .strictObject({ id: productId, name, description: description.default(''), category, priceCents, currency: currency.optional(), active: z.boolean().optional() })
  .openapi('NewProduct', { example: { id: 'wooden-whale', name: 'Wooden whale', description: 'A pull-along whale.', category: 'baby', priceCents: 1590 } });
const ProductChangesSchema = z
  .strictObject({ name, description, category, priceCents, currency, active: z.boolean() })
  .partial()
  .refine((o) => Object.keys(o).length > 0, 'at least one field to change')
  .openapi('ProductChanges', { minProperties: 1, example: { priceCents: 1490 } });

const idParam = z.object({ id: productId.openapi({ param: { name: 'id', in: 'path' }, example: 'wooden-train' }) });
const boolParam = z.enum(['true', 'false']).transform((v) => v === 'true');
const money = (param: string, description: string) =>
  queryInteger(0, Number.MAX_SAFE_INTEGER).optional().openapi({ param: { name: param, in: 'query' }, description });

const listProducts = createRoute({
  method: 'get',
  path: '/api/catalog/products',
  summary: 'Products in id order, one page at a time, with optional filters',
  request: {
    query: z.object({
      ...pageQuery(cursors.productId),
      category: category.optional().openapi({ param: { name: 'category', in: 'query' }, example: 'vehicles' }),
      minPrice: money('minPrice', 'lowest price, in cents'),
      maxPrice: money('maxPrice', 'highest price, in cents'),
      q: z.string().max(100).optional().openapi({ param: { name: 'q', in: 'query' }, description: 'words to find in name or description' }),
      active: boolParam.optional().openapi({ param: { name: 'active', in: 'query' }, type: 'string', enum: ['true', 'false'] }),
    }),
  },
  responses: {
    200: { description: 'One page of products', content: { 'application/json': { schema: pageOf(ProductSchema, 'ProductPage') } } },
    400: problemResponse('Invalid filter, limit or cursor'),
  },
});

const getProduct = createRoute({
  method: 'get',
  path: '/api/catalog/products/{id}',
  summary: 'One product',
  request: { params: idParam },
  responses: {
    200: { description: 'The product', content: { 'application/json': { schema: ProductSchema } } },
    400: problemResponse('Malformed id'),
    404: problemResponse('No such product'),
  },
});

const createProduct = createRoute({
  method: 'post',
  path: '/api/catalog/products',
  summary: 'Add a product (admin)',
  security: adminSecurity,
  request: { body: { content: { 'application/json': { schema: NewProductSchema } }, required: true } },
  responses: {
    201: {
      description: 'Created',
      headers: z.object({ Location: z.string() }),
      content: { 'application/json': { schema: ProductSchema } },
    },
    400: problemResponse('Invalid product'),
    409: problemResponse('A product with this id exists'),
    ...adminResponses,
  },
});

const changeProduct = createRoute({
  method: 'patch',
  path: '/api/catalog/products/{id}',
  summary: 'Change a product (admin); only the fields given change',
  security: adminSecurity,
  request: { params: idParam, body: { content: { 'application/json': { schema: ProductChangesSchema } }, required: true } },
  responses: {
    200: { description: 'The changed product', content: { 'application/json': { schema: ProductSchema } } },
    400: problemResponse('Invalid change'),
    404: problemResponse('No such product'),
    ...adminResponses,
  },
});

export function createCatalogApp({ store, log, metrics, ready, adminApiKey, onChange }: CatalogAppOptions) {
  const app = createApp({ log, metrics, ready });
  const admin = requireAdminKey(adminApiKey, log);
  registerAdminScheme(app);
  app.use('/api/catalog/*', limitBody(64 * 1024));
  app.doc31('/api/catalog/openapi.json', { openapi: '3.1.0', info: { title: 'Woodytoys catalog', version: '1.0.0' } });

  app.openapi(listProducts, (c) => {
    const { limit, cursor, category, minPrice, maxPrice, q, active } = c.req.valid('query');
    const page = store.list({ category, minPriceCents: minPrice, maxPriceCents: maxPrice, q, active, after: cursor, limit });
    return c.json({ items: page.items, nextCursor: nextCursor(page.more, page.items.at(-1)?.id) }, 200);
  });

  app.openapi(getProduct, (c) => {
    const product = store.get(c.req.valid('param').id);
    if (!product) return problem(404, 'Not Found', 'no product with this id');
    return c.json(product, 200);
  });

  app.openapi(withAdminKey(createProduct, admin), (c) => {
    const product = store.create(c.req.valid('json'));
    if (!product) return problem(409, 'Conflict', 'a product with this id already exists');
    onChange?.();
    c.header('Location', `/api/catalog/products/${product.id}`);
    return c.json(product, 201);
  });

  app.openapi(withAdminKey(changeProduct, admin), (c) => {
    const product = store.update(c.req.valid('param').id, c.req.valid('json'));
    if (!product) return problem(404, 'Not Found', 'no product with this id');
    onChange?.();
    return c.json(product, 200);
  });

  return app;
}
