// Every topic and event of the system, defined once. Producers and consumers import from here, so a
// newcomer can follow where an order goes next by reading this file top to bottom.
//
// Two namespaces: woodytoys/<area>/… for the services and workers, some of it personal (a customer's
// name and e-mail ride on orders/created and stock/reserved), and woodytoys/public/… for displays and
// the dashboard, whose login is public: order statuses under an anonymous reference, stock levels,
// products and live figures (lib/stats.ts), never anything personal. The ACL (broker/mosquitto/acl)
// lets the viewer read the public namespace and nothing else.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { TOPIC_ROOT, defineEvent } from './events.js';
import { hopsSchema } from './timeline.js';

/** Where the viewer reads: nothing personal is ever published under it. */
export const PUBLIC_ROOT = `${TOPIC_ROOT}/public`;

export const productId = z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'lower-case letters, digits and dashes');

export const orderItem = z.strictObject({
  productId,
  quantity: z.number().int().min(1).max(1000),
});

export const customer = z.strictObject({
  name: z.string().trim().min(1).max(120),
  email: z.email().max(254),
});

const order = z.strictObject({
  orderId: z.uuid(),
  customer,
  items: z.array(orderItem).min(1).max(50),
});

// Sample values for the AsyncAPI document's examples (never real customers).
const sampleOrderId = '0b7e6c1e-3f0a-4c8e-9d7b-2a5f4e1c9d30';
const sampleImportId = '5d2c8f4a-7b1e-4f3a-8c6d-1e9b0a2f7c45';
const sampleOrder = {
  orderId: sampleOrderId,
  customer: { name: 'Ada', email: 'ada@example.com' },
  items: [{ productId: 'wooden-train', quantity: 2 }],
};

export const orderCreated = defineEvent({
  topic: `${TOPIC_ROOT}/orders/created`,
  type: 'woodytoys.order.created',
  summary: 'Saga step 1: the orders service accepted an order (published from its outbox). Personal: carries the customer.',
  data: order,
  example: sampleOrder,
});

/** The hops an order went through so far (lib/timeline.ts), carried on to the orders service. */
const hops = { hops: hopsSchema.optional() };

const orderRef = z.strictObject({ orderId: z.uuid(), reason: z.string().min(1).max(500), ...hops });

export const stockReserved = defineEvent({
  topic: `${TOPIC_ROOT}/stock/reserved`,
  type: 'woodytoys.stock.reserved',
  summary: 'Saga step 3a: the stock service reserved every item of the order (all or none); the order workers record it in the ERP. Personal: carries the customer.',
  data: order.extend(hops),
  example: sampleOrder,
});

export const stockRejected = defineEvent({
  topic: `${TOPIC_ROOT}/stock/rejected`,
  type: 'woodytoys.stock.rejected',
  summary: 'Saga step 3b: not enough stock for at least one item of the order, so nothing was reserved.',
  data: orderRef,
  example: { orderId: sampleOrderId, reason: 'out of stock: wooden-train (2 wanted, 1 available)' },
});

export const orderConfirmed = defineEvent({
  topic: `${TOPIC_ROOT}/orders/confirmed`,
  type: 'woodytoys.order.confirmed',
  summary: 'Saga step 4a: the ERP recorded the order.',
  data: z.strictObject({ orderId: z.uuid(), erpReference: z.string().min(1).max(128), ...hops }),
  example: { orderId: sampleOrderId, erpReference: 'ERP-000042' },
});

export const orderFailed = defineEvent({
  topic: `${TOPIC_ROOT}/orders/failed`,
  type: 'woodytoys.order.failed',
  summary: "Saga step 4b: the order cannot be completed (refused by the ERP, or given up); `reason` is shown to the customer in the order's history.",
  data: z.strictObject({ orderId: z.uuid(), reason: z.string().min(1).max(500), ...hops }),
  example: { orderId: sampleOrderId, reason: 'ERP refused the order: credit check failed' },
});

export const orderParked = defineEvent({
  topic: `${TOPIC_ROOT}/orders/parked`,
  type: 'woodytoys.order.parked',
  summary:
    "Saga step 4c: the ERP could not be reached (unreachable, 5xx, timeouts, 429s) for all of a worker's attempts. Transient is not final: the order stays pending with its stock reserved, and its dead letter waits for an operator's replay.",
  data: z.strictObject({ orderId: z.uuid(), reason: z.string().min(1).max(500), attempts: z.number().int().min(1), ...hops }),
  example: { orderId: sampleOrderId, reason: 'gave up after 8 attempts: ERP answered 503', attempts: 8 },
});

/**
 * How much of the original payload a dead letter carries: every event of ours is far smaller (an
 * order body is at most 16 KiB), so a dead letter of one holds all of it and can be replayed; what
 * is cut is kept for reading only. Small enough that the dead letter, JSON-escaped, stays within
 * MAX_EVENT_BYTES whatever the original's bytes.
 */
export const DEAD_LETTER_PAYLOAD_BYTES = 32 * 1024;

export const deadLetter = defineEvent({
  topic: `${TOPIC_ROOT}/deadletter/+`,
  type: 'woodytoys.deadletter',
  summary:
    'A message a consumer could not process: the original payload and why. Stored by the dead-letter service (shared group `deadletters`), which an operator reads and replays through the admin API; never retried automatically (it may hold personal data).',
  parameters: { consumer: 'the consumer that gave up on the message (orders, stock, order-workers, stock-workers, …)' },
  data: z.strictObject({
    consumer: z.string().min(1),
    topic: z.string(),
    reason: z.string(),
    attempts: z.number().int().min(0).optional(),
    /** The original's CloudEvent id, when it has one: a replay publishes it again under the same id. */
    eventId: z.string().max(256).optional(),
    /** The original payload, UTF-8, cut at DEAD_LETTER_PAYLOAD_BYTES. */
    payload: z.string(),
    payloadBytes: z.number().int().min(0),
  }),
  example: { consumer: 'stock', topic: `${TOPIC_ROOT}/orders/created`, reason: 'payload is not valid JSON', payload: '{"orderId":', payloadBytes: 11 },
});

export const deadLetterTopic = (consumer: string) => `${TOPIC_ROOT}/deadletter/${consumer}`;
/** The consumer a dead-letter topic names (its last level). */
export const deadLetterConsumer = (topic: string) => topic.slice(topic.lastIndexOf('/') + 1);

/**
 * An order as displays may know it: not its id (which opens the order, customer included, on the
 * API) but a reference derived from it, which cannot be turned back into the id.
 */
export const publicOrderRef = (orderId: string) => createHash('sha256').update(`woodytoys public order ${orderId}`).digest('hex').slice(0, 16);

export const orderStatus = defineEvent({
  topic: `${PUBLIC_ROOT}/orders/status`,
  type: 'woodytoys.public.order-status',
  summary:
    "Public: an order's status changed (pending when accepted, then confirmed or rejected), under an anonymous reference that cannot be turned back into the order id.",
  data: z.strictObject({
    ref: z.string().regex(/^[a-f0-9]{16}$/),
    status: z.enum(['pending', 'confirmed', 'rejected']),
    /** units ordered, all items together */
    units: z.number().int().min(1),
  }),
  example: { ref: publicOrderRef(sampleOrderId), status: 'confirmed', units: 2 },
});

export const stockLevel = defineEvent({
  topic: `${PUBLIC_ROOT}/stock/levels/+`,
  type: 'woodytoys.stock.level',
  retain: true,
  summary: 'Public: the current level of one product, retained so a display sees it the moment it subscribes.',
  parameters: { productId: 'the product' },
  data: z.strictObject({
    productId,
    available: z.number().int().min(0),
    reserved: z.number().int().min(0),
    updatedAt: z.iso.datetime({ offset: true }),
  }),
  example: { productId: 'wooden-train', available: 41, reserved: 2, updatedAt: '2025-01-15T10:30:00.000Z' },
});
export const stockLevelTopic = (id: string) => `${PUBLIC_ROOT}/stock/levels/${id}`;

export const stockMovement = defineEvent({
  topic: `${TOPIC_ROOT}/stock/movements`,
  type: 'woodytoys.stock.movement',
  summary: 'One movement of a bulk stock import, for the stock workers to write to the ERP (paced).',
  data: z.strictObject({
    importId: z.uuid(),
    /** Unique within the whole system; the ERP operation id is derived from it. */
    movementId: z.string().regex(/^[A-Za-z0-9:._-]{1,128}$/),
    productId,
    /** Units received (positive) or removed (negative). */
    delta: z.number().int().min(-1_000_000).max(1_000_000).refine((n) => n !== 0, 'must not be 0'),
  }),
  example: { importId: sampleImportId, movementId: 'delivery-2025-01-15:17', productId: 'wooden-train', delta: 24 },
});

export const stockMovementProcessed = defineEvent({
  topic: `${TOPIC_ROOT}/stock/movements/processed`,
  type: 'woodytoys.stock.movement-processed',
  summary: "A stock worker's result for one movement: recorded in the ERP, or failed for good (with why).",
  data: z.strictObject({
    importId: z.uuid(),
    movementId: z.string().min(1).max(128),
    /** parked: the ERP could not be reached for every attempt; the movement waits for a replay of its dead letter. */
    outcome: z.enum(['recorded', 'failed', 'parked']),
    erpReference: z.string().max(128).optional(),
    reason: z.string().max(500).optional(),
  }),
  example: { importId: sampleImportId, movementId: 'delivery-2025-01-15:17', outcome: 'recorded', erpReference: 'ERP-MV-000017' },
});

export const productChanged = defineEvent({
  topic: `${PUBLIC_ROOT}/catalog/products/+`,
  type: 'woodytoys.catalog.product-changed',
  retain: true,
  summary: 'Public: a product was created or changed in the catalogue; retained, so a display gets the current product.',
  parameters: { productId: 'the product' },
  data: z.strictObject({
    productId,
    name: z.string().min(1).max(120),
    category: z.string().min(1).max(60),
    priceCents: z.number().int().min(0),
    currency: z.string().length(3),
    active: z.boolean(),
    updatedAt: z.iso.datetime({ offset: true }),
  }),
  example: { productId: 'wooden-train', name: 'Wooden train', category: 'vehicles', priceCents: 3490, currency: 'EUR', active: true, updatedAt: '2025-01-15T10:30:00.000Z' },
});
export const productTopic = (id: string) => `${PUBLIC_ROOT}/catalog/products/${id}`;

/**
 * The topics a dead letter may be replayed to: every topic a consumer of ours reads work from (the
 * ACL lets the dead-letter service publish exactly these). Retained public topics are not among
 * them: their publishers announce the current value again themselves.
 */
export const replayableTopics: readonly string[] = [orderCreated, stockReserved, stockRejected, orderConfirmed, orderFailed, orderParked, stockMovement, stockMovementProcessed].map((e) => e.topic);

/**
 * The shared groups of the system's consumers and the topic filters each subscribes to, declared
 * once: the stock service, the workers and the dead-letter service subscribe to exactly these, and
 * our broker keeps every one of them from its first start (BROKER_GROUPS, README "First start"),
 * so what is published before a group's first member has ever subscribed waits for it.
 */
export const SHARED_GROUPS = {
  stock: [orderCreated, orderConfirmed, orderFailed, stockMovementProcessed, productChanged].map((e) => e.topic),
  'order-workers': [stockReserved.topic],
  'stock-workers': [stockMovement.topic],
  deadletters: [deadLetter.topic],
} as const satisfies Record<string, readonly string[]>;

/** A shared subscription: `$share/<group>/<filter>`. */
export const shareOf = (group: string, filter: string) => `$share/${group}/${filter}`;

/** Every shared subscription SHARED_GROUPS declares. */
export const declaredShares = (): string[] => Object.entries(SHARED_GROUPS).flatMap(([group, filters]) => filters.map((f) => shareOf(group, f)));
