// The orders HTTP API: accept an order at once (202) and let the saga finish it asynchronously.
import { createRoute, z } from '@hono/zod-openapi';
import { requireAdminKey, withAdminKey } from '../../lib/admin-key.js';
import { adminResponses, adminSecurity, cursors, formatPatterns, nextCursor, nonBlank, pageOf, pageQuery, problemResponse, registerAdminScheme, uuidInput, uuidParam } from '../../lib/api-docs.js';
import { createApp, limitBody, problem, type Readiness } from '../../lib/http.js';
import type { Logger } from '../../lib/log.js';
import type { Metrics } from '../../lib/metrics.js';
import { customer, orderItem, publicOrderRef } from '../../lib/topics.js';
import { OrderStreams, registerEventRoutes } from './events.js';
import { STEPS, type Order, type OrderStore } from './store.js';
import { publicTimeline } from './timeline.js';

export interface OrdersAppOptions {
  store: OrderStore;
  log: Logger;
  metrics: Metrics;
  ready: Readiness;
  /** Called after an order is committed, so the outbox relay publishes it without waiting to poll. */
  onOrderCreated?: () => void;
  maxBodyBytes?: number;
  /** The orders' event streams (api/orders/events.ts); default: one with default bounds. */
  streams?: OrderStreams;
  /** The AsyncAPI document, served at /asyncapi.json (lib/asyncapi.ts). */
  asyncApi?: unknown;
  /** Key for the admin routes (the list of every order); unset: they answer 503. */
  adminApiKey?: string | undefined;
}

// The event's customer schema (lib/topics.ts) validates, and the document says what its checks
// mean: the name's length is also checked as sent (its schema trims first, which no JSON Schema
// keyword can say), it must not be blank, and the e-mail matches zod's pattern.
const documentedCustomer = customer.extend({
  name: z.string().max(customer.shape.name.maxLength!).pipe(customer.shape.name).openapi(nonBlank),
  email: customer.shape.email.openapi(formatPatterns.email),
});

const NewOrderSchema = z
  .strictObject({ customer: documentedCustomer, items: z.array(orderItem).min(1).max(50) })
  .openapi('NewOrder', {
    example: { customer: { name: 'Ada', email: 'ada@example.com' }, items: [{ productId: 'wooden-train', quantity: 1 }] },
  });

const statusSchema = z.enum(['pending', 'confirmed', 'rejected']);
const HistorySchema = z.object({
  status: z.enum(STEPS).openapi({ description: '`parked`: still pending, the ERP could not be reached for now (detail: why); replaying its dead letter resumes it' }),
  at: z.string(),
  detail: z.string().nullable(),
});
const OrderSchema = z
  .object({
    id: z.uuid(),
    status: statusSchema,
    customer,
    items: z.array(orderItem),
    reason: z.string().nullable(),
    erpReference: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    history: z.array(HistorySchema),
  })
  .openapi('Order');

const createOrder = createRoute({
  method: 'post',
  path: '/api/orders',
  summary: 'Place an order; it is validated and recorded asynchronously',
  description:
    'With an Idempotency-Key, retrying is safe: the same key and body answer like the first time (same order, same Location); the same key with another body is a 422.',
  request: {
    headers: z.object({
      'idempotency-key': z
        .string()
        .regex(/^[\x21-\x7e]{1,255}$/, '1-255 visible ASCII characters')
        .optional()
        .openapi({ param: { name: 'idempotency-key', in: 'header' }, description: 'Idempotency-Key (header names are case-insensitive)', example: '6f1c2f0e-order-42' }),
    }),
    body: { content: { 'application/json': { schema: NewOrderSchema } }, required: true },
  },
  responses: {
    202: {
      description: 'Accepted; follow Location for the status',
      headers: z.object({ Location: z.string() }),
      content: { 'application/json': { schema: OrderSchema } },
    },
    400: problemResponse('Invalid order'),
    413: problemResponse('Body too large'),
    422: problemResponse('Idempotency-Key already used with a different body'),
  },
});

// The list shows every customer's name and e-mail: it is the back office's (admin key). A customer
// follows an order through its id, which only its Location gave out (a capability).
const listOrders = createRoute({
  method: 'get',
  path: '/api/orders',
  summary: 'Orders, newest first, one page at a time (admin)',
  security: adminSecurity,
  request: {
    query: z.object({ ...pageQuery(cursors.position), status: statusSchema.optional().openapi({ param: { name: 'status', in: 'query' } }) }),
  },
  responses: {
    200: { description: 'One page of orders', content: { 'application/json': { schema: pageOf(OrderSchema, 'OrderPage') } } },
    400: problemResponse('Invalid status, limit or cursor'),
    ...adminResponses,
  },
});

const getOrder = createRoute({
  method: 'get',
  path: '/api/orders/{id}',
  summary: 'An order with its status and history',
  request: { params: z.object({ id: uuidParam('id') }) },
  responses: {
    200: { description: 'The order', content: { 'application/json': { schema: OrderSchema } } },
    400: problemResponse('Malformed id'),
    404: problemResponse('No such order'),
  },
});

const HopSchema = z
  .object({
    name: z.string().openapi({ example: 'erp attempt' }),
    service: z.string().openapi({ example: 'worker' }),
    start: z.string().openapi({ format: 'date-time' }),
    durationMs: z.number().nullable().openapi({ description: 'null while the hop is under way (the outbox publish before the broker acknowledged it)' }),
    detail: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional().openapi({ example: { attempt: 1, result: 'throttled', status: 429, retryAfterMs: 200 } }),
  })
  .openapi('Hop');
const TimelineSchema = z
  .object({
    ref: z.string().openapi({ description: "the order's public reference (as on woodytoys/public/orders/status)" }),
    traceId: z.string().nullable().openapi({ description: 'the W3C trace id the order was accepted in' }),
    hops: z.array(HopSchema),
  })
  .openapi('Timeline');

const getTimeline = createRoute({
  method: 'get',
  path: '/api/orders/{id}/timeline',
  summary: "An order's hops through the services, with their times and durations",
  description:
    'Built from what the services record (no trace backend needed): the accept, the outbox publish, each wait in a queue, the stock reservation, each ERP attempt with its wait for pace and its answer (a 429 with its Retry-After is an attempt of its own), and the outcome applied. `id` is the order id, or its public reference (16 hex digits, as the dashboard knows it): nothing in a timeline is personal, and by public reference it leaves out the trace id and the text of ERP errors.',
  request: {
    params: z.object({
      id: z
        .union([uuidInput().openapi(formatPatterns.uuid), z.string().regex(/^[0-9a-f]{16}$/)])
        .openapi({ param: { name: 'id', in: 'path' }, description: 'order id (UUID) or public reference (16 hex digits)', example: '0b7e6c1e-3f0a-4c8e-9d7b-2a5f4e1c9d30' }),    }),
  },
  responses: {
    200: { description: "The order's hops, oldest first", content: { 'application/json': { schema: TimelineSchema } } },
    400: problemResponse('Malformed id'),
    404: problemResponse('Nothing recorded for this order'),
  },
});

export const orderLocation = (o: Pick<Order, 'id'>) => `/api/orders/${o.id}`;

export function createOrdersApp({ store, log, metrics, ready, onOrderCreated, maxBodyBytes = 16 * 1024, streams = new OrderStreams(store), asyncApi, adminApiKey }: OrdersAppOptions) {
  const app = createApp({ log, metrics, ready });
  const admin = requireAdminKey(adminApiKey, log);
  registerAdminScheme(app);
  app.use('/api/orders', limitBody(maxBodyBytes));

  // Registered before /api/orders/{id} so that the document is not taken for an order id.
  app.doc31('/api/orders/openapi.json', { openapi: '3.1.0', info: { title: 'Woodytoys orders', version: '1.0.0' } });

  app.openapi(createOrder, (c) => {
    const receivedAt = Date.now();
    const result = store.create(c.req.valid('json'), c.req.valid('header')['idempotency-key'], receivedAt);
    if (result.kind === 'key-reused') {
      return problem(422, 'Idempotency-Key reused', 'this Idempotency-Key was first used with a different body');
    }
    if (result.kind === 'created') onOrderCreated?.();
    else c.header('Idempotent-Replayed', 'true');
    c.header('Location', orderLocation(result.order));
    return c.json(result.order, 202);
  });

  app.openapi(withAdminKey(listOrders, admin), (c) => {
    const { limit, cursor, status } = c.req.valid('query');
    const page = store.list({ status, before: cursor, limit });
    return c.json({ items: page.items, nextCursor: nextCursor(page.more, page.last) }, 200);
  });

  app.openapi(getOrder, (c) => {
    const order = store.get(c.req.valid('param').id);
    if (!order) return problem(404, 'Not Found', 'no order with this id');
    return c.json(order, 200);
  });

  app.openapi(getTimeline, (c) => {
    const { id } = c.req.valid('param');
    const byRef = id.length === 16;
    const timeline = store.timelines.get(byRef ? id : publicOrderRef(id));
    if (!timeline) return problem(404, 'Not Found', 'nothing recorded for this order');
    return c.json(byRef ? publicTimeline(timeline) : timeline, 200);
  });

  registerEventRoutes(app, { store, streams, asyncApi });
  return app;
}
