// The event side of the orders API: an order's status pushed as Server-Sent Events, so a client
// learns of the confirmation without polling, and the AsyncAPI document of the broker's topics.
// The stream learns of changes from the store itself (OrderStore.changes), never from the broker.
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import { problemResponse, uuidParam } from '../../lib/api-docs.js';
import { problem, type AppEnv } from '../../lib/http.js';
import { STEPS, isFinal, type OrderStore } from './store.js';

export interface OrderStreamsOptions {
  /** Streams open at once in this process; more get a 503. */
  max?: number;
  /** A comment line this often keeps proxies from closing an idle stream (below the gateway's proxy_read_timeout). */
  heartbeatMs?: number;
}

/**
 * The open event streams of one process: bounded in number, each following one order until it is
 * final, its client leaves, or the process shuts down (close() ends them all, so that the HTTP
 * server's graceful close does not wait on them).
 */
export class OrderStreams {
  readonly max: number;
  readonly heartbeatMs: number;
  readonly #open = new Map<() => void, { stream: SSEStreamingApi; done: Promise<void> }>();
  #closing = false;

  constructor(
    private readonly store: OrderStore,
    { max = 1000, heartbeatMs = 15_000 }: OrderStreamsOptions = {},
  ) {
    this.max = max;
    this.heartbeatMs = heartbeatMs;
  }

  get size(): number {
    return this.#open.size;
  }

  /** Room for one more stream? */
  get full(): boolean {
    return this.#closing || this.#open.size >= this.max;
  }

  /**
   * Sends the order's history after step `after`, then each new step as it is committed, with a
   * heartbeat comment while nothing happens; returns after the final status.
   */
  follow(stream: SSEStreamingApi, orderId: string, after: number): Promise<void> {
    let dirty = true;
    let wake = () => {};
    const poke = () => {
      dirty = true;
      wake();
    };
    const unwatch = this.store.changes.watch(orderId, poke);
    stream.onAbort(poke);
    const run = async () => {
      let last = after;
      while (!stream.aborted && !this.#closing) {
        if (dirty) {
          dirty = false;
          for (const step of this.store.historySince(orderId, last)) {
            await stream.writeSSE({ event: 'status', id: String(step.seq), data: JSON.stringify(OrderStatusEvent.parse({ orderId, ...step })) });
            last = step.seq;
            if (isFinal(step.status)) return;
          }
          continue;
        }
        const beat = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(true), this.heartbeatMs);
          wake = () => {
            clearTimeout(timer);
            resolve(false);
          };
        });
        wake = () => {};
        if (beat) await stream.write(': heartbeat\n\n');
      }
    };
    const done = run().finally(() => {
      unwatch();
      this.#open.delete(poke);
    });
    this.#open.set(poke, { stream, done });
    return done;
  }

  /**
   * Ends every stream (graceful shutdown) and refuses new ones. A stream whose client stopped
   * reading (a write waits on it) is aborted after `graceMs`.
   */
  async close(graceMs = 2000): Promise<void> {
    this.#closing = true;
    const open = [...this.#open.entries()];
    for (const [poke] of open) poke();
    const all = Promise.allSettled(open.map(([, s]) => s.done));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    for (const [, s] of open) s.stream.abort();
    await all;
  }
}

const OrderStatusEvent = z
  .object({
    orderId: z.uuid(),
    seq: z.number().int().min(1).openapi({ description: 'Step of the history, from 1 (pending); also the event id' }),
    status: z.enum(STEPS).openapi({ description: '`parked`: still pending, the ERP unreachable for now (detail: why); a replay resumes it' }),
    at: z.string(),
    detail: z.string().nullable().openapi({ description: 'The ERP reference (confirmed) or the reason (rejected)' }),
  })
  .openapi('OrderStatusEvent');

const orderEvents = createRoute({
  method: 'get',
  path: '/api/orders/{id}/events',
  summary: "The order's status as Server-Sent Events: its history at once, then each change; ends once the order is final",
  description: [
    'Each step of the order\'s history is one event `status` whose `id` is the step number (1 = pending) and whose `data` is an OrderStatusEvent (JSON).',
    'A new stream replays the whole history, so the current status comes at once; then each change follows as it happens, and the stream ends after the final status (confirmed or rejected).',
    'Reconnecting with `Last-Event-ID` (as EventSource does) sends only the steps after it, so nothing arrives twice; when nothing is left and the order is final the answer is 204, which tells EventSource to stop.',
    'Comment lines (`: heartbeat`) keep proxies from closing an idle stream. The order id is the capability, as for GET /api/orders/{id}.',
  ].join(' '),
  request: {
    params: z.object({ id: uuidParam('id') }),
    headers: z.object({
      'last-event-id': z
        .string()
        .regex(/^\d{1,9}$/, 'the id of an event of this stream')
        .optional()
        .openapi({ param: { name: 'last-event-id', in: 'header' }, description: 'Last-Event-ID: the last step received; only later ones are sent', example: '1' }),
    }),
  },
  responses: {
    200: {
      description: 'The stream of status events',
      content: {
        'text/event-stream': {
          schema: z.string().openapi({
            description: 'event: status / id: <step> / data: <OrderStatusEvent as JSON>, one per step; comment lines in between',
            example: 'event: status\ndata: {"orderId":"0b7e6c1e-3f0a-4c8e-9d7b-2a5f4e1c9d30","seq":1,"status":"pending","at":"2025-01-15T10:30:00.000Z","detail":null}\nid: 1\n\n',
          }),
        },
      },
    },
    204: { description: 'Nothing after Last-Event-ID and the order is final: nothing more will come' },
    400: problemResponse('Malformed id or Last-Event-ID'),
    404: problemResponse('No such order'),
    422: problemResponse('A Last-Event-ID this order never sent (beyond its last step)'),
    503: problemResponse('Too many open streams; retry after Retry-After seconds'),
  },
});

/** Registers GET /api/orders/{id}/events and, when given, GET /asyncapi.json. */
export function registerEventRoutes(app: OpenAPIHono<AppEnv>, { store, streams, asyncApi }: { store: OrderStore; streams: OrderStreams; asyncApi?: unknown }) {
  app.openAPIRegistry.register('OrderStatusEvent', OrderStatusEvent);
  app.openapi(orderEvents, (c) => {
    const { id } = c.req.valid('param');
    const order = store.get(id);
    if (!order) return problem(404, 'Not Found', 'no order with this id');
    const after = Number(c.req.valid('header')['last-event-id'] ?? 0);
    if (after > order.history.length) return problem(422, 'Unknown Last-Event-ID', `Last-Event-ID ${after}: this order has ${order.history.length} steps`);
    if (after === order.history.length && order.status !== 'pending') return c.body(null, 204);
    // HEAD runs this GET handler and drops the body: a stream nobody reads would hold its place.
    if (c.req.method === 'HEAD') return c.body(null, 200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    if (streams.full) {
      return problem(503, 'Service Unavailable', 'too many open event streams; retry later', {}, { 'retry-after': '5' });
    }
    // nginx passes the stream on as it comes (the gateway also sets proxy_buffering off).
    c.header('X-Accel-Buffering', 'no');
    return streamSSE(c, (stream) => streams.follow(stream, id, after));
  });
  if (asyncApi !== undefined) app.get('/asyncapi.json', (c) => c.json(asyncApi as object));
}
