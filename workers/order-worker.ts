// The order worker's handler: record each order whose stock is reserved (stockReserved, saga step 3a)
// in the ERP, then publish the outcome. The outcome's event id is derived from the input event's, so a
// redelivered reservation produces the very same outcome event and the orders service applies it once.
// Only the ERP's own refusal rejects an order: attempts that ran out on transient failures park it (it
// stays pending, its stock held) and its dead letter waits for an operator's replay, which brings the
// same event back.
import { createEvent, deriveId } from '../lib/events.js';
import type { Logger } from '../lib/log.js';
import { PermanentFailure, eventRoute, publishEvent, type MqttClient, type Route } from '../lib/mqtt.js';
import { orderConfirmed, orderFailed, orderParked, stockReserved } from '../lib/topics.js';
import { journey, queueWait } from '../lib/timeline.js';
import type { RecordInErp } from './paced-erp.js';

export const SOURCE = '/woodytoys/workers';

export interface OrderWorkerOptions {
  /** The publishing connection, not the consuming one. */
  publisher: MqttClient;
  /** Records an operation in the ERP, paced and retried (see paced-erp.ts). */
  record: RecordInErp;
  log: Logger;
}

export function orderWorkerRoutes({ publisher, record, log }: OrderWorkerOptions): Route[] {
  return [
    eventRoute(stockReserved, {
      async handle({ id, data, time }, topic) {
        // The order's timeline (lib/timeline.ts): the hops so far, the wait for us, then each attempt.
        const hops = journey(data.hops, queueWait('worker', time, topic));
        const final = await record({ operationId: `order:${data.orderId}`, kind: 'order', payload: { orderId: data.orderId, customer: data.customer, items: data.items } }, hops);
        const subject = data.orderId;
        const carried = journey(hops); // the attempts may have taken it past MAX_HOPS
        if (final.kind === 'recorded') {
          const event = createEvent(orderConfirmed, { orderId: data.orderId, erpReference: final.reference, hops: carried }, { source: SOURCE, id: deriveId(id, 'confirmed'), subject });
          await publishEvent(publisher, orderConfirmed.topic, event);
          log.debug({ orderId: data.orderId, duplicate: final.duplicate }, 'order recorded in ERP');
          return;
        }
        if (final.kind === 'exhausted') {
          // Each parking is a fact of its own (a replay may park the order again): a fresh event id.
          const parked = createEvent(orderParked, { orderId: data.orderId, reason: final.reason.slice(0, 500), attempts: final.attempts, hops: carried }, { source: SOURCE, subject });
          // Announced only once its dead letter is durable: a worker that dies in between leaves the
          // message unacknowledged, and an order is never parked without a dead letter to replay.
          throw new PermanentFailure(final.reason, final.attempts, () => publishEvent(publisher, orderParked.topic, parked));
        }
        const event = createEvent(orderFailed, { orderId: data.orderId, reason: final.reason, hops: carried }, { source: SOURCE, id: deriveId(id, 'failed'), subject });
        await publishEvent(publisher, orderFailed.topic, event);
        log.info({ orderId: data.orderId, reason: final.reason }, 'order refused by ERP');
      },
    }),
  ];
}
