// Orders service: config → database (group commit) → MQTT (outbox relay + outcome consumer) → HTTP →
// shutdown.
// First, before any schema is built: @hono/zod-openapi gives zod schemas .openapi(), which app.ts
// calls on schemas of lib/topics.ts, and zod 4 gives a schema its methods when it is built.
import '@hono/zod-openapi';
import { Gauge } from 'prom-client';
import { z } from 'zod';
import { asyncApiFor, DEFAULT_ACL_FILE } from '../../lib/asyncapi.js';
import { commonEnv, loadConfig, mqttEnv, port, positiveInt } from '../../lib/config.js';
import { dataFile } from '../../lib/db.js';
import { answerAfterCommit, groupCommit } from '../../lib/group-commit.js';
import { consumerEnv } from '../../lib/mqtt.js';
import { Service } from '../../lib/service.js';
import { orderConfirmed, orderFailed, orderParked, stockRejected } from '../../lib/topics.js';
import { PROCESSES } from '../../lib/processes.js';
import { createOrdersApp } from './app.js';
import { OrderStreams } from './events.js';
import { outcomeRoutes } from './outcomes.js';
import { OrderStore, SOURCE } from './store.js';

const config = loadConfig({
  ...commonEnv,
  ...mqttEnv,
  ...consumerEnv,
  HTTP_PORT: port(PROCESSES.orders.ports.HTTP_PORT.port),
  ORDERS_MAX_BODY_BYTES: positiveInt(16 * 1024),
  ORDERS_EVENT_STREAMS_MAX: positiveInt(1000),
  ADMIN_API_KEY: z.string().min(16, 'use at least 16 characters').optional(),
  /** Below the gateway's proxy_read_timeout for the stream (nginx.conf: 60 s). */
  ORDERS_EVENT_HEARTBEAT_MS: z.coerce.number().int().min(100).max(50_000).default(15_000),
  /** The ACL the broker enforces, read for the AsyncAPI document (same variable and default as the broker). */
  BROKER_ACL_FILE: z.string().min(1).default(DEFAULT_ACL_FILE),
});
const service = new Service('orders', config);
const { log, metrics } = service;
const store = new OrderStore(dataFile(config.DATA_DIR, 'orders'));
// The orders accepted in one turn commit together; each 202 waits for that commit.
groupCommit(store.db);

// One connection publishes (outbox relay, dead letters); the other consumes outcomes in a persistent session.
const publisher = service.publisher();
const { subscribed } = service.consume({
  consumer: 'orders',
  publisher,
  source: SOURCE,
  routes: outcomeRoutes(store, log),
  db: store.db,
  filters: [orderConfirmed.topic, orderFailed.topic, stockRejected.topic, orderParked.topic],
});
// No order goes out before this session has subscribed once: on a new broker, an outcome published
// before that would have nowhere to wait (README, "First start"). The stock service and the workers
// are in groups the broker keeps from its start (BROKER_GROUPS).
const relay = service.outbox(store.db, publisher, { onSent: (ids, at) => store.timelines.published(ids, at), holdUntil: subscribed });
// Order counts by status for displays and the dashboard (woodytoys/public/stats/orders, retained).
service.publishStats(publisher, 'orders', () => ({ counts: store.countByStatus(), parked: store.countParked(), outboxPending: relay.pending() }));

const streams = new OrderStreams(store, { max: config.ORDERS_EVENT_STREAMS_MAX, heartbeatMs: config.ORDERS_EVENT_HEARTBEAT_MS });
new Gauge({
  name: 'order_event_streams',
  help: 'Open Server-Sent Event streams (GET /api/orders/{id}/events)',
  registers: [metrics.registry],
  collect() {
    this.set(streams.size);
  },
});

new Gauge({
  name: 'orders',
  help: 'Orders by status',
  labelNames: ['status'] as const,
  registers: [metrics.registry],
  collect() {
    for (const [status, n] of Object.entries(store.countByStatus())) this.set({ status }, n);
  },
});
new Gauge({
  name: 'orders_parked',
  help: 'Pending orders parked: the ERP could not be reached for all their attempts; their dead letter waits for a replay',
  registers: [metrics.registry],
  collect() {
    this.set(store.countParked());
  },
});
const app = createOrdersApp({
  store,
  log,
  metrics,
  // Accepting orders needs only the database: while the broker is away they wait in the outbox.
  ready: () => ({ database: store.db.open }),
  onOrderCreated: () => relay.wake(),
  maxBodyBytes: config.ORDERS_MAX_BODY_BYTES,
  streams,
  asyncApi: asyncApiFor(config.BROKER_ACL_FILE),
  adminApiKey: config.ADMIN_API_KEY,
});
await service.serve(answerAfterCommit(app, store.db));

service.stopOnSignal({
  // Open event streams would hold the HTTP server's close: end them first.
  first: () => streams.close(),
  last: () => store.close(),
});
