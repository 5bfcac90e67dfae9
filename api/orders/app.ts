// The orders HTTP API: accept an order at once (202) and let the saga finish it asynchronously.
import { createRoute, z } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import { createApp, payloadTooLarge, problem, type Readiness } from '../../lib/http.js';
import type { Logger } from '../../lib/log.js';
import type { Metrics } from '../../lib/metrics.js';
import { customer, orderItem } from '../../lib/topics.js';
import type { Order, OrderStore } from './store.js';

export interface OrdersAppOptions {
  store: OrderStore;
  log: Logger;
  metrics: Metrics;
  ready: Readiness;
  /** Called after an order is committed, so the outbox relay publishes it without waiting to poll. */
  onOrderCreated?: () => void;
  maxBodyBytes?: number;
}

const NewOrderSchema = z
  .strictObject({ customer, items: z.array(orderItem).min(1).max(50) })
  .openapi('NewOrder', {
    example: { customer: { name: 'Ada', email: 'ada@example.com' }, items: [{ productId: 'wooden-train', quantity: 1 }] },
  });

const HistorySchema = z.object({ status: z.string(), at: z.string(), detail: z.string().nullable() });
const OrderSchema = z
  .object({
    id: z.uuid(),
    status: z.enum(['pending', 'confirmed', 'rejected']),
    customer,
    items: z.array(orderItem),
    reason: z.string().nullable(),
    erpReference: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
    history: z.array(HistorySchema),
  })
  .openapi('Order');
const ProblemSchema = z
  .object({ type: z.string(), title: z.string(), status: z.number(), detail: z.string().optional() })
  .openapi('Problem');
const problemContent = { 'application/problem+json': { schema: ProblemSchema } };

const createOrder = createRoute({
  method: 'post',
  path: '/api/orders',
  summary: 'Place an order; it is validated and recorded asynchronously',
  request: { body: { content: { 'application/json': { schema: NewOrderSchema } }, required: true } },
  responses: {
    202: {
      description: 'Accepted; follow Location for the status',
      headers: z.object({ Location: z.string() }),
      content: { 'application/json': { schema: OrderSchema } },
    },
    400: { description: 'Invalid order', content: problemContent },
    413: { description: 'Body too large', content: problemContent },
  },
});

const getOrder = createRoute({
  method: 'get',
  path: '/api/orders/{id}',
  summary: 'An order with its status and history',
  request: { params: z.object({ id: z.uuid().openapi({ param: { name: 'id', in: 'path' } }) }) },
  responses: {
    200: { description: 'The order', content: { 'application/json': { schema: OrderSchema } } },
    400: { description: 'Malformed id', content: problemContent },
    404: { description: 'No such order', content: problemContent },
  },
});

export const orderLocation = (o: Pick<Order, 'id'>) => `/api/orders/${o.id}`;

export function createOrdersApp({ store, log, metrics, ready, onOrderCreated, maxBodyBytes = 16 * 1024 }: OrdersAppOptions) {
  const app = createApp({ log, metrics, ready });
  app.use('/api/orders', bodyLimit({ maxSize: maxBodyBytes, onError: payloadTooLarge(maxBodyBytes) }));

  // Registered before /api/orders/{id} so that the document is not taken for an order id.
  app.doc31('/api/orders/openapi.json', { openapi: '3.1.0', info: { title: 'Woodytoys orders', version: '1.0.0' } });

  app.openapi(createOrder, (c) => {
    const order = store.create(c.req.valid('json'));
    onOrderCreated?.();
    c.header('Location', orderLocation(order));
    return c.json(order, 202);
  });

  app.openapi(getOrder, (c) => {
    const order = store.get(c.req.valid('param').id);
    if (!order) return problem(404, 'Not Found', 'no order with this id') as never;
    return c.json(order, 200);
  });

  return app;
}
