// Consumes the saga's outcome events (ERP confirmed or failed, stock rejected) and moves each order
// to its final status.
import { decodeEvent } from '../../lib/events.js';
import { PermanentFailure, type Route } from '../../lib/mqtt.js';
import { orderConfirmed, orderFailed, stockRejected } from '../../lib/topics.js';
import type { Logger } from '../../lib/log.js';
import type { OrderStore } from './store.js';

export function outcomeRoutes(store: OrderStore, log: Logger): Route[] {
  return [
    {
      filter: orderConfirmed.topic,
      async handle(_topic, payload) {
        const decoded = decodeEvent(orderConfirmed, payload);
        if (!decoded.ok) throw new PermanentFailure(decoded.reason);
        const { id, data } = decoded.event;
        report(store.applyOutcome(id, data.orderId, 'confirmed', { erpReference: data.erpReference }), data.orderId, log);
      },
    },
    {
      filter: orderFailed.topic,
      async handle(_topic, payload) {
        const decoded = decodeEvent(orderFailed, payload);
        if (!decoded.ok) throw new PermanentFailure(decoded.reason);
        const { id, data } = decoded.event;
        report(store.applyOutcome(id, data.orderId, 'rejected', { reason: data.reason }), data.orderId, log);
      },
    },
    {
      // Saga step 3b: no stock for it, so the order never reaches the ERP.
      filter: stockRejected.topic,
      async handle(_topic, payload) {
        const decoded = decodeEvent(stockRejected, payload);
        if (!decoded.ok) throw new PermanentFailure(decoded.reason);
        const { id, data } = decoded.event;
        report(store.applyOutcome(id, data.orderId, 'rejected', { reason: data.reason }), data.orderId, log);
      },
    },
  ];
}

function report(result: ReturnType<OrderStore['applyOutcome']>, orderId: string, log: Logger): void {
  if (result === 'unknown-order') throw new PermanentFailure(`unknown order ${orderId}`);
  log.debug({ orderId, result }, 'outcome applied');
}
