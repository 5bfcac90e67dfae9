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

/** 1. The orders service accepted an order (published from its outbox). */
export const orderCreated = defineEvent({
  topic: `${TOPIC_ROOT}/orders/created`,
  type: 'woodytoys.order.created',
  data: order,
});

const orderRef = z.strictObject({ orderId: z.uuid(), reason: z.string().min(1).max(500) });

/** 3a. The stock service reserved every item of the order (all or none). */
export const stockReserved = defineEvent({
  topic: `${TOPIC_ROOT}/stock/reserved`,
  type: 'woodytoys.stock.reserved',
  data: order,
});

/** 3b. Not enough stock for at least one item: nothing was reserved. */
export const stockRejected = defineEvent({
  topic: `${TOPIC_ROOT}/stock/rejected`,
  type: 'woodytoys.stock.rejected',
  data: orderRef,
});

/**
 * The event that tells the order workers to record an order in the ERP: its stock reservation
 * (saga step 3), so the ERP only ever sees orders whose items are set aside.
 */
export const orderReadyForErp = stockReserved;

/** 4a. The ERP recorded the order. */
export const orderConfirmed = defineEvent({
  topic: `${TOPIC_ROOT}/orders/confirmed`,
  type: 'woodytoys.order.confirmed',
  data: z.strictObject({ orderId: z.uuid(), erpReference: z.string().min(1).max(128) }),
});

/** 4b. The order cannot be completed; `reason` is shown to the customer in the order's history. */
export const orderFailed = defineEvent({
  topic: `${TOPIC_ROOT}/orders/failed`,
  type: 'woodytoys.order.failed',
  data: z.strictObject({ orderId: z.uuid(), reason: z.string().min(1).max(500) }),
});

/** A message a consumer could not process: the original payload and why. Never retried automatically. */
export const deadLetter = defineEvent({
  topic: `${TOPIC_ROOT}/deadletter/+`,
  type: 'woodytoys.deadletter',
  data: z.strictObject({
    consumer: z.string().min(1),
    topic: z.string(),
    reason: z.string(),
    attempts: z.number().int().min(0).optional(),
    /** The original payload, UTF-8, cut at 4 KiB. */
    payload: z.string(),
    payloadBytes: z.number().int().min(0),
  }),
});

export const deadLetterTopic = (consumer: string) => `${TOPIC_ROOT}/deadletter/${consumer}`;

/**
 * An order as displays may know it: not its id (which opens the order, customer included, on the
 * API) but a reference derived from it, which cannot be turned back into the id.
 */
export const publicOrderRef = (orderId: string) => createHash('sha256').update(`woodytoys public order ${orderId}`).digest('hex').slice(0, 16);

/** Public: an order's status changed (pending when accepted, then confirmed or rejected), in the orders' outbox with the change. */
export const orderStatus = defineEvent({
  topic: `${PUBLIC_ROOT}/orders/status`,
  type: 'woodytoys.public.order-status',
  data: z.strictObject({
    ref: z.string().regex(/^[a-f0-9]{16}$/),
    status: z.enum(['pending', 'confirmed', 'rejected']),
    /** units ordered, all items together */
    units: z.number().int().min(1),
  }),
});

/** Public: the current level of one product, retained so a display sees it the moment it subscribes. */
export const stockLevel = defineEvent({
  topic: `${PUBLIC_ROOT}/stock/levels/+`,
  type: 'woodytoys.stock.level',
  retain: true,
  data: z.strictObject({
    productId,
    available: z.number().int().min(0),
    reserved: z.number().int().min(0),
    updatedAt: z.iso.datetime({ offset: true }),
  }),
});
export const stockLevelTopic = (id: string) => `${PUBLIC_ROOT}/stock/levels/${id}`;

/** One movement of a bulk stock import, for the stock workers to write to the ERP (paced). */
export const stockMovement = defineEvent({
  topic: `${TOPIC_ROOT}/stock/movements`,
  type: 'woodytoys.stock.movement',
  data: z.strictObject({
    importId: z.uuid(),
    /** Unique within the whole system; the ERP operation id is derived from it. */
    movementId: z.string().regex(/^[A-Za-z0-9:._-]{1,128}$/),
    productId,
    /** Units received (positive) or removed (negative). */
    delta: z.number().int().min(-1_000_000).max(1_000_000).refine((n) => n !== 0, 'must not be 0'),
  }),
});

/** A stock worker's result for one movement: recorded in the ERP, or failed for good (with why). */
export const stockMovementProcessed = defineEvent({
  topic: `${TOPIC_ROOT}/stock/movements/processed`,
  type: 'woodytoys.stock.movement-processed',
  data: z.strictObject({
    importId: z.uuid(),
    movementId: z.string().min(1).max(128),
    outcome: z.enum(['recorded', 'failed']),
    erpReference: z.string().max(128).optional(),
    reason: z.string().max(500).optional(),
  }),
});

/** Public: a product was created or changed in the catalogue; retained, so a display gets the current product. */
export const productChanged = defineEvent({
  topic: `${PUBLIC_ROOT}/catalog/products/+`,
  type: 'woodytoys.catalog.product-changed',
  retain: true,
  data: z.strictObject({
    productId,
    name: z.string().min(1).max(120),
    category: z.string().min(1).max(60),
    priceCents: z.number().int().min(0),
    currency: z.string().length(3),
    active: z.boolean(),
    updatedAt: z.iso.datetime({ offset: true }),
  }),
});
export const productTopic = (id: string) => `${PUBLIC_ROOT}/catalog/products/${id}`;
