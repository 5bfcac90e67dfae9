// The stock HTTP API: levels (public), admin adjustments, bulk imports of stock movements with a
// progress resource, and a read-only view of the reservation behind an order.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { requireAdminKey, withAdminKey } from '../../lib/admin-key.js';
import { adminResponses, adminSecurity, cursors, nextCursor, nonBlank, pageOf, pageQuery, problemResponse, registerAdminScheme, uuidParam } from '../../lib/api-docs.js';
import { createApp, limitBody, problem, type AppEnv, type Readiness } from '../../lib/http.js';
import type { Logger } from '../../lib/log.js';
import type { Metrics } from '../../lib/metrics.js';
import { productId } from '../../lib/topics.js';
import { MovementSchema, NDJSON_TYPES, parseMovements } from './import-body.js';
import type { StockImports } from './imports.js';
import type { StockLevels } from './levels.js';
import type { Reservations } from './reservations.js';
import type { StockStore } from './store.js';

export interface StockAppOptions {
  store: StockStore;
  log: Logger;
  metrics: Metrics;
  ready: Readiness;
  /** Unset disables the admin routes (503). */
  adminApiKey?: string | undefined;
  /** Called after a change is committed, so the outbox relay publishes it without waiting to poll. */
  onChange?: () => void;
  importMaxBytes?: number;
  importMaxMovements?: number;
}

const LevelSchema = z
  .object({ productId, available: z.number().int(), reserved: z.number().int(), updatedAt: z.string() })
  .openapi('StockLevel', { description: '`available` can be ordered; `reserved` is held by orders the ERP has not confirmed yet' });
const ImportSchema = z
  .object({
    id: z.uuid(),
    status: z.enum(['processing', 'completed', 'completed_with_failures']),
    total: z.number().int(),
    done: z.number().int().openapi({ description: 'movements recorded in the ERP and applied to the levels' }),
    failed: z.number().int(),
    parked: z.number().int().openapi({ description: 'movements the ERP could not take for now (unreachable, 5xx, 429s): not done nor failed, they wait for a replay of their dead letter (/api/deadletters)' }),
    createdAt: z.string(),
    updatedAt: z.string(),
    completedAt: z.string().nullable(),
    failures: z.array(z.object({ movementId: z.string(), line: z.number().int(), reason: z.string().nullable() })),
  })
  .openapi('StockImport');
const ReservationSchema = z.object({ orderId: z.uuid(), status: z.enum(['held', 'rejected', 'released', 'sold']), reason: z.string().nullable() }).openapi('Reservation');

const productParam = z.object({ productId: productId.openapi({ param: { name: 'productId', in: 'path' }, example: 'wooden-train' }) });
const reason = z.string().max(200).trim().min(1).openapi(nonBlank);

const listLevels = createRoute({
  method: 'get',
  path: '/api/stock/levels',
  summary: 'Stock levels in product id order, one page at a time',
  request: {
    query: z.object({
      ...pageQuery(cursors.productId),
      inStock: z
        .enum(['true', 'false'])
        .transform((v) => v === 'true')
        .optional()
        .openapi({ param: { name: 'inStock', in: 'query' }, type: 'string', enum: ['true', 'false'] }),
    }),
  },
  responses: {
    200: { description: 'One page of levels', content: { 'application/json': { schema: pageOf(LevelSchema, 'StockLevelPage') } } },
    400: problemResponse('Invalid query or cursor'),
  },
});

const getLevel = createRoute({
  method: 'get',
  path: '/api/stock/levels/{productId}',
  summary: "One product's stock level",
  request: { params: productParam },
  responses: {
    200: { description: 'The level', content: { 'application/json': { schema: LevelSchema } } },
    400: problemResponse('Malformed product id'),
    404: problemResponse('No stock level for this product'),
  },
});

const countLevel = createRoute({
  method: 'put',
  path: '/api/stock/levels/{productId}',
  summary: 'Set the available count after a stocktake (admin); creates the level if needed',
  security: adminSecurity,
  request: {
    params: productParam,
    body: {
      content: { 'application/json': { schema: z.strictObject({ available: z.number().int().min(0).max(10_000_000), reason: reason.default('stocktake') }).openapi('StockCount') } },
      required: true,
    },
  },
  responses: { 200: { description: 'The new level', content: { 'application/json': { schema: LevelSchema } } }, 400: problemResponse('Invalid count'), ...adminResponses },
});

const adjustLevel = createRoute({
  method: 'post',
  path: '/api/stock/levels/{productId}/adjustments',
  summary: 'Add or remove units (admin), e.g. breakage or a found carton',
  security: adminSecurity,
  request: {
    params: productParam,
    body: {
      content: {
        'application/json': {
          schema: z
            .strictObject({ delta: MovementSchema.shape.delta, reason })
            .openapi('StockAdjustment', { example: { delta: -2, reason: 'broken in the warehouse' } }),
        },
      },
      required: true,
    },
  },
  responses: {
    200: { description: 'The new level', content: { 'application/json': { schema: LevelSchema } } },
    400: problemResponse('Invalid adjustment'),
    404: problemResponse('No stock level for this product'),
    409: problemResponse('Would take the available count below zero'),
    ...adminResponses,
  },
});

interface ImportLimits {
  maxBytes: number;
  maxMovements: number;
}

/**
 * The import route's document. Its body is read by hand (streamed NDJSON, bounded JSON) so errors
 * can name lines: it is documented from the same movement schema that validates each line.
 */
const createImport = ({ maxBytes, maxMovements }: ImportLimits) => ({
  method: 'post' as const,
  path: '/api/stock/imports',
  summary: 'Import a batch of stock movements (admin); they reach the ERP asynchronously',
  description: `A JSON array, or NDJSON (${NDJSON_TYPES.join(', ')}) with one movement per line (at least one, at most ${maxMovements}, ${maxBytes} bytes in all). Every line is validated; any invalid line rejects the whole import: 400 for a line that does not match the schema, 422 for an unknown product or a movementId already used.`,
  security: adminSecurity,
  request: {
    body: {
      required: true,
      content: {
        'application/json': { schema: z.array(MovementSchema).min(1).max(maxMovements) },
        'application/x-ndjson': { schema: MovementSchema },
      },
    },
  },
  responses: {
    202: {
      description: 'Stored; follow Location for the progress',
      headers: z.object({ Location: z.string() }),
      content: { 'application/json': { schema: ImportSchema } },
    },
    400: problemResponse('Invalid movements; `errors` lists each line'),
    413: problemResponse('Too many bytes or movements'),
    422: problemResponse('Unknown products, or movement ids already used; `errors` lists each line'),
    415: problemResponse('Neither JSON nor NDJSON'),
    ...adminResponses,
  },
});

const listImports = createRoute({
  method: 'get',
  path: '/api/stock/imports',
  summary: 'Imports, newest first, one page at a time',
  request: { query: z.object(pageQuery(cursors.position)) },
  responses: {
    200: { description: 'One page of imports', content: { 'application/json': { schema: pageOf(ImportSchema, 'StockImportPage') } } },
    400: problemResponse('Invalid query or cursor'),
  },
});

const getImport = createRoute({
  method: 'get',
  path: '/api/stock/imports/{id}',
  summary: "An import's progress: total, done, failed, status",
  request: { params: z.object({ id: uuidParam('id') }) },
  responses: {
    200: { description: 'The progress', content: { 'application/json': { schema: ImportSchema } } },
    400: problemResponse('Malformed id'),
    404: problemResponse('No such import'),
  },
});

const getReservation = createRoute({
  method: 'get',
  path: '/api/stock/reservations/{orderId}',
  summary: "The reservation behind an order: held, rejected, released (compensated) or sold",
  request: { params: z.object({ orderId: uuidParam('orderId') }) },
  responses: {
    200: { description: 'The reservation', content: { 'application/json': { schema: ReservationSchema } } },
    400: problemResponse('Malformed order id'),
    404: problemResponse('No reservation for this order (yet)'),
  },
});

export function createStockApp({ store, log, metrics, ready, adminApiKey, onChange, importMaxBytes = 32 * 1024 * 1024, importMaxMovements = 100_000 }: StockAppOptions) {
  const app = createApp({ log, metrics, ready });
  const admin = requireAdminKey(adminApiKey, log);
  registerAdminScheme(app);
  app.use('/api/stock/levels/*', limitBody(16 * 1024));
  app.doc31('/api/stock/openapi.json', { openapi: '3.1.0', info: { title: 'Woodytoys stock', version: '1.0.0' } });

  registerLevelRoutes(app, { levels: store.levels, admin, onChange });
  registerImportRoutes(app, { imports: store.imports, admin, log, onChange, limits: { maxBytes: importMaxBytes, maxMovements: importMaxMovements } });
  registerReservationRoutes(app, { reservations: store.reservations });
  return app;
}

type StockApp = OpenAPIHono<AppEnv>;
interface Writes {
  /** The admin key check. */
  admin: MiddlewareHandler;
  onChange?: (() => void) | undefined;
}

function registerLevelRoutes(app: StockApp, { levels, admin, onChange }: Writes & { levels: StockLevels }) {
  app.openapi(listLevels, (c) => {
    const { limit, cursor, inStock } = c.req.valid('query');
    const page = levels.list({ after: cursor, limit, inStock });
    return c.json({ items: page.items, nextCursor: nextCursor(page.more, page.items.at(-1)?.productId) }, 200);
  });

  app.openapi(getLevel, (c) => {
    const level = levels.get(c.req.valid('param').productId);
    if (!level) return problem(404, 'Not Found', 'no stock level for this product');
    return c.json(level, 200);
  });

  app.openapi(withAdminKey(countLevel, admin), (c) => {
    const { available, reason } = c.req.valid('json');
    const level = levels.setAvailable(c.req.valid('param').productId, available, reason);
    onChange?.();
    return c.json(level, 200);
  });

  app.openapi(withAdminKey(adjustLevel, admin), (c) => {
    const { delta, reason } = c.req.valid('json');
    const result = levels.adjust(c.req.valid('param').productId, delta, reason);
    if (result === undefined) return problem(404, 'Not Found', 'no stock level for this product');
    if (result instanceof Error) return problem(409, 'Conflict', result.message);
    onChange?.();
    return c.json(result, 200);
  });
}

function registerImportRoutes(app: StockApp, { imports, admin, log, onChange, limits }: Writes & { imports: StockImports; log: Logger; limits: ImportLimits }) {
  app.openAPIRegistry.registerPath(createImport(limits));
  app.post('/api/stock/imports', admin, async (c) => {
    const parsed = await parseMovements(c.req.header('content-type'), c.req.raw.body, limits);
    if (!parsed.ok) return problem(parsed.status, parsed.title, parsed.detail, parsed.errors ? { errors: parsed.errors } : {});
    const errors = imports.refusals(parsed.movements, parsed.lines);
    if (errors.length > 0) {
      // The lines match the schema; what refuses them is the store's state: 422, not 400.
      return problem(422, 'Unprocessable movements', `lines: ${errors.slice(0, 100).map((e) => e.line).join(', ')}; nothing was stored`, { errors: errors.slice(0, 100) });
    }
    const created = imports.create(parsed.movements, parsed.lines);
    onChange?.();
    log.info({ importId: created.id, total: created.total }, 'stock import accepted');
    c.header('Location', `/api/stock/imports/${created.id}`);
    return c.json(created, 202);
  });

  app.openapi(listImports, (c) => {
    const { limit, cursor } = c.req.valid('query');
    const page = imports.list({ before: cursor, limit });
    return c.json({ items: page.items, nextCursor: nextCursor(page.more, page.lastSeq) }, 200);
  });

  app.openapi(getImport, (c) => {
    const found = imports.get(c.req.valid('param').id);
    if (!found) return problem(404, 'Not Found', 'no import with this id');
    return c.json(found, 200);
  });
}

function registerReservationRoutes(app: StockApp, { reservations }: { reservations: Reservations }) {
  app.openapi(getReservation, (c) => {
    const { orderId } = c.req.valid('param');
    const found = reservations.get(orderId);
    if (!found) return problem(404, 'Not Found', 'no reservation for this order (yet)');
    return c.json({ orderId, ...found }, 200);
  });
}
