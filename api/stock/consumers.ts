// What the stock service consumes, each in its shared group `stock`: new orders (reserve), the
// order's end (sell or release), the workers' results for imported movements, and new products.
// Every effect is a write to the stock database, so the messages in hand commit together.
import type { z } from 'zod';
import type { EventDefinition } from '../../lib/events.js';
import type { Logger } from '../../lib/log.js';
import { PermanentFailure, eventRoute, type Route } from '../../lib/mqtt.js';
import { SHARED_GROUPS, orderConfirmed, orderCreated, orderFailed, productChanged, shareOf, stockMovementProcessed } from '../../lib/topics.js';
import { queueWait } from '../../lib/timeline.js';
import type { StockStore } from './store.js';

export const GROUP = 'stock';

/** The topics, in the shared group, that `stockRoutes` handles (declared in lib/topics.ts, SHARED_GROUPS). */
export const stockSubscriptions = SHARED_GROUPS[GROUP].map((filter) => shareOf(GROUP, filter));

export interface StockConsumerOptions {
  store: StockStore;
  log: Logger;
  /** After a change that put events in the outbox. */
  onChange?: () => void;
}

export function stockRoutes({ store, log, onChange }: StockConsumerOptions): Route[] {
  /** One event, decoded, then its effect (with the event's time and topic); each may have put events in the outbox. */
  const route = <T extends z.ZodType>(def: EventDefinition<T>, effect: (data: z.infer<T>, time: string, topic: string) => void): Route =>
    eventRoute(def, {
      apply({ data, time }, topic) {
        effect(data, time, topic);
        onChange?.();
      },
    });
  return [
    // The order's timeline (lib/timeline.ts) starts here: its wait for us, then the reservation.
    route(orderCreated, (order, time, topic) => {
      const r = store.reserve(order, [queueWait('stock', time, topic)]);
      log.debug({ orderId: order.orderId, ...r }, 'reservation');
    }),
    route(orderConfirmed, ({ orderId }) => {
      log.debug({ orderId, result: store.sell(orderId) }, 'reservation sold');
    }),
    route(orderFailed, ({ orderId, reason }) => {
      const result = store.release(orderId, reason);
      log.info({ orderId, result }, 'reservation released (order failed)');
    }),
    route(stockMovementProcessed, (outcome) => {
      const result = store.applyMovementOutcome(outcome);
      if (result === 'unknown-movement') throw new PermanentFailure(`unknown movement ${outcome.movementId} of import ${outcome.importId}`);
    }),
    route(productChanged, ({ productId }) => store.ensureProduct(productId)),
  ];
}
