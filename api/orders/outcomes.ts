// Consumes the saga's outcome events (ERP confirmed or failed, stock rejected, parked) and moves each order
// to its final status: writes to the orders database only, so the messages in hand commit together.
import type { z } from 'zod';
import type { EventDefinition } from '../../lib/events.js';
import { PermanentFailure, eventRoute, type Route } from '../../lib/mqtt.js';
import { orderConfirmed, orderFailed, orderParked, stockRejected } from '../../lib/topics.js';
import type { Logger } from '../../lib/log.js';
import { hop, journey, queueWait, type Hop } from '../../lib/timeline.js';
import type { Journey, OrderStore } from './store.js';

/**
 * The outcome's hops for the order's timeline: those its event carried (stock, worker), its wait for
 * us, and applying it, which ends when the store asks (inside the outcome's transaction).
 */
function arrived(carried: Hop[] | undefined, time: string, topic: string): Journey {
  const wait = queueWait('orders', time, topic);
  const start = Date.now();
  return () => journey(carried, wait, hop('outcome applied', 'orders', start));
}

export function outcomeRoutes(store: OrderStore, log: Logger): Route[] {
  /** One outcome event, applied once (its id is remembered with the change). */
  const route = <T extends { orderId: string; hops?: Hop[] | undefined }>(
    def: EventDefinition<z.ZodType<T>>,
    status: 'confirmed' | 'rejected',
    detail: (data: T) => { reason?: string; erpReference?: string },
  ): Route =>
    eventRoute(def, {
      apply({ id, data, time }, topic) {
        const result = store.applyOutcome(id, data.orderId, status, detail(data), arrived(data.hops, time, topic));
        if (result === 'unknown-order') throw new PermanentFailure(`unknown order ${data.orderId}`);
        log.debug({ orderId: data.orderId, result }, 'outcome applied');
      },
    });
  return [
    route(orderConfirmed, 'confirmed', (d) => ({ erpReference: d.erpReference })),
    route(orderFailed, 'rejected', (d) => ({ reason: d.reason })),
    // Saga step 3b: no stock for it, so the order never reaches the ERP.
    route(stockRejected, 'rejected', (d) => ({ reason: d.reason })),
    // Transient is not final: the order stays pending, and says why in its history.
    eventRoute(orderParked, {
      apply({ id, data, time }, topic) {
        const result = store.applyParked(id, data.orderId, data.reason, arrived(data.hops, time, topic));
        if (result === 'unknown-order') throw new PermanentFailure(`unknown order ${data.orderId}`);
        log.info({ orderId: data.orderId, result, reason: data.reason }, 'order parked');
      },
    }),
  ];
}
