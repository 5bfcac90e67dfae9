// The stock HTTP API: levels (public), admin adjustments, bulk imports of stock movements with a
// progress resource, and a read-only view of the reservation behind an order.
import { createRoute, z } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import { requireAdminKey } from '../../lib/admin-key.js';
import { adminResponses, adminSecurity, cursors, nextCursor, nonBlank, pageOf, pageQuery, problemResponse, registerAdminScheme, uuidParam } from '../../lib/api-docs.js';
import { createApp, payloadTooLarge, problem, type Readiness } from '../../lib/http.js';
import type { Logger } from '../../lib/log.js';
import type { Metrics } from '../../lib/metrics.js';
import { productId } from '../../lib/topics.js';
import { MovementSchema, NDJSON_TYPES, parseMovements, type LineError } from './import-body.js';
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

export function createStockApp({ store, log, metrics, ready, adminApiKey, onChange, importMaxBytes = 32 * 1024 * 1024, importMaxMovements = 100_000 }: StockAppOptions) {
  const app = createApp({ log, metrics, ready });
  const admin = requireAdminKey(adminApiKey, log);
  registerAdminScheme(app);
  app.use('/api/stock/levels/*', bodyLimit({ maxSize: 16 * 1024, onError: payloadTooLarge(16 * 1024) }));
  app.doc31('/api/stock/openapi.json', { openapi: '3.1.0', info: { title: 'Woodytoys stock', version: '1.0.0' } });

  app.openapi(
    createRoute({
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
    }),
    (c) => {
      const { limit, cursor, inStock } = c.req.valid('query');
      const page = store.listLevels({ after: cursor, limit, inStock });
      return c.json({ items: page.items, nextCursor: nextCursor(page.more, page.items.at(-1)?.productId) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/stock/levels/{productId}',
      summary: "One product's stock level",
      request: { params: productParam },
      responses: {
        200: { description: 'The level', content: { 'application/json': { schema: LevelSchema } } },
        400: problemResponse('Malformed product id'),
        404: problemResponse('No stock level for this product'),
      },
    }),
    (c) => {
      const level = store.level(c.req.valid('param').productId);
      if (!level) return problem(404, 'Not Found', 'no stock level for this product');
      return c.json(level, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/api/stock/levels/{productId}',
      summary: 'Set the available count after a stocktake (admin); creates the level if needed',
      security: adminSecurity,
      middleware: [admin],
      request: {
        params: productParam,
        body: {
          content: { 'application/json': { schema: z.strictObject({ available: z.number().int().min(0).max(10_000_000), reason: reason.default('stocktake') }).openapi('StockCount') } },
          required: true,
        },
      },
      responses: { 200: { description: 'The new level', content: { 'application/json': { schema: LevelSchema } } }, 400: problemResponse('Invalid count'), ...adminResponses },
    }),
    (c) => {
      const { available, reason } = c.req.valid('json');
      const level = store.setAvailable(c.req.valid('param').productId, available, reason);
      onChange?.();
      return c.json(level, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/stock/levels/{productId}/adjustments',
      summary: 'Add or remove units (admin), e.g. breakage or a found carton',
      security: adminSecurity,
      middleware: [admin],
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
    }),
    (c) => {
      const { delta, reason } = c.req.valid('json');
      const result = store.adjust(c.req.valid('param').productId, delta, reason);
      if (result === undefined) return problem(404, 'Not Found', 'no stock level for this product');
      if (result instanceof Error) return problem(409, 'Conflict', result.message);
      onChange?.();
      return c.json(result, 200);
    },
  );

  // The import body is read by hand (streamed NDJSON, bounded JSON) so errors can name lines; the
  // route is documented from the same movement schema that validates each line.
  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/api/stock/imports',
    summary: 'Import a batch of stock movements (admin); they reach the ERP asynchronously',
    description: `A JSON array, or NDJSON (${NDJSON_TYPES.join(', ')}) with one movement per line (at least one, at most ${importMaxMovements}, ${importMaxBytes} bytes in all). Every line is validated; any invalid line rejects the whole import: 400 for a line that does not match the schema, 422 for an unknown product or a movementId already used.`,
    security: adminSecurity,
    request: {
      body: {
        required: true,
        content: {
          'application/json': { schema: z.array(MovementSchema).min(1).max(importMaxMovements) },
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
  app.post('/api/stock/imports', admin, async (c) => {
    const parsed = await parseMovements(c.req.header('content-type'), c.req.raw.body, { maxBytes: importMaxBytes, maxMovements: importMaxMovements });
    if (!parsed.ok) return problem(parsed.status, parsed.title, parsed.detail, parsed.errors ? { errors: parsed.errors } : {});
    const errors = checkAgainstStore(store, parsed.movements, parsed.lines);
    if (errors.length > 0) {
      // The lines match the schema; what refuses them is the store's state: 422, not 400.
      return problem(422, 'Unprocessable movements', `lines: ${errors.slice(0, 100).map((e) => e.line).join(', ')}; nothing was stored`, { errors: errors.slice(0, 100) });
    }
    const created = store.createImport(parsed.movements, parsed.lines);
    onChange?.();
    log.info({ importId: created.id, total: created.total }, 'stock import accepted');
    c.header('Location', `/api/stock/imports/${created.id}`);
    return c.json(created, 202);
  });

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/stock/imports',
      summary: 'Imports, newest first, one page at a time',
      request: { query: z.object(pageQuery(cursors.position)) },
      responses: {
        200: { description: 'One page of imports', content: { 'application/json': { schema: pageOf(ImportSchema, 'StockImportPage') } } },
        400: problemResponse('Invalid query or cursor'),
      },
    }),
    (c) => {
      const { limit, cursor } = c.req.valid('query');
      const page = store.listImports({ before: cursor, limit });
      return c.json({ items: page.items, nextCursor: nextCursor(page.more, page.lastSeq) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/stock/imports/{id}',
      summary: "An import's progress: total, done, failed, status",
      request: { params: z.object({ id: uuidParam('id') }) },
      responses: {
        200: { description: 'The progress', content: { 'application/json': { schema: ImportSchema } } },
        400: problemResponse('Malformed id'),
        404: problemResponse('No such import'),
      },
    }),
    (c) => {
      const found = store.getImport(c.req.valid('param').id);
      if (!found) return problem(404, 'Not Found', 'no import with this id');
      return c.json(found, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/stock/reservations/{orderId}',
      summary: "The reservation behind an order: held, rejected, released (compensated) or sold",
      request: { params: z.object({ orderId: uuidParam('orderId') }) },
      responses: {
        200: { description: 'The reservation', content: { 'application/json': { schema: ReservationSchema } } },
        400: problemResponse('Malformed order id'),
        404: problemResponse('No reservation for this order (yet)'),
      },
    }),
    (c) => {
      const { orderId } = c.req.valid('param');
      const found = store.reservation(orderId);
      if (!found) return problem(404, 'Not Found', 'no reservation for this order (yet)');
      return c.json({ orderId, status: found.status as 'held', reason: found.reason }, 200);
    },
  );

  return app;
}

/** What only the store can tell: unknown products, and movement ids used twice. */
function checkAgainstStore(store: StockStore, movements: z.infer<typeof MovementSchema>[], lines: number[]): LineError[] {
  const errors: LineError[] = [];
  const unknown = store.unknownProducts(movements.map((m) => m.productId));
  const given = movements.flatMap((m) => (m.movementId ? [m.movementId] : []));
  const used = given.length ? store.knownMovementIds(given) : new Set<string>();
  const seen = new Set<string>();
  movements.forEach((m, i) => {
    const line = lines[i]!;
    if (unknown.has(m.productId)) errors.push({ line, message: `productId: unknown product ${m.productId}` });
    if (m.movementId === undefined) return;
    if (used.has(m.movementId)) errors.push({ line, message: `movementId: ${m.movementId} was already imported` });
    else if (seen.has(m.movementId)) errors.push({ line, message: `movementId: ${m.movementId} appears twice in this import` });
    seen.add(m.movementId);
  });
  return errors;
}
