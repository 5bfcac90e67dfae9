// The order worker's handler: record each created order in the ERP, then publish the outcome.
// The outcome's event id is derived from the input event's, so a redelivered order produces the
// very same outcome event and the orders service applies it once.
import { createEvent, decodeEvent, deriveId } from '../lib/events.js';
import type { Logger } from '../lib/log.js';
import { PermanentFailure, publishEvent, type MqttClient, type Route } from '../lib/mqtt.js';
import { orderConfirmed, orderFailed, orderReadyForErp } from '../lib/topics.js';
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
    {
      filter: orderReadyForErp.topic,
      async handle(_topic, payload) {
        const decoded = decodeEvent(orderReadyForErp, payload);
        if (!decoded.ok) throw new PermanentFailure(decoded.reason);
        const { id, data } = decoded.event;
        const final = await record({ operationId: `order:${data.orderId}`, kind: 'order', payload: { orderId: data.orderId, customer: data.customer, items: data.items } });
        const subject = data.orderId;
        if (final.kind === 'recorded') {
          const event = createEvent(orderConfirmed, { orderId: data.orderId, erpReference: final.reference }, { source: SOURCE, id: deriveId(id, 'confirmed'), subject });
          await publishEvent(publisher, orderConfirmed.topic, event);
          log.debug({ orderId: data.orderId, duplicate: final.duplicate }, 'order recorded in ERP');
          return;
        }
        const event = createEvent(orderFailed, { orderId: data.orderId, reason: final.reason }, { source: SOURCE, id: deriveId(id, 'failed'), subject });
        await publishEvent(publisher, orderFailed.topic, event);
        if (final.kind === 'exhausted') throw new PermanentFailure(final.reason, final.attempts);
        log.info({ orderId: data.orderId, reason: final.reason }, 'order refused by ERP');
      },
    },
  ];
}
