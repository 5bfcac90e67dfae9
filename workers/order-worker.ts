// The order worker's handler: record each created order in the ERP, then publish the outcome.
// The outcome's event id is derived from the input event's, so a redelivered order produces the
// very same outcome event and the orders service applies it once.
import { createEvent, decodeEvent, deriveId } from '../lib/events.js';
import type { Logger } from '../lib/log.js';
import { PermanentFailure, publishEvent, type MqttClient, type Route } from '../lib/mqtt.js';
import { sleep } from '../lib/shutdown.js';
import { orderConfirmed, orderFailed, orderReadyForErp } from '../lib/topics.js';
import type { ErpClient, ErpOperation, ErpResult } from './erp-client.js';

export const SOURCE = '/woodytoys/workers';

export interface OrderWorkerOptions {
  /** The publishing connection, not the consuming one. */
  publisher: MqttClient;
  erp: ErpClient;
  log: Logger;
  maxAttempts: number;
  /** Counts what happened to each ERP call, e.g. into Prometheus. */
  onErpResult?: (result: ErpResult['kind']) => void;
}

export type Final = Exclude<ErpResult, { kind: 'throttled' } | { kind: 'unavailable' }> | { kind: 'exhausted'; reason: string; attempts: number };

/** Calls the ERP until it gives a final answer: honours Retry-After, backs off when it is down. */
export async function recordWithRetry(erp: ErpClient, op: ErpOperation, maxAttempts: number, onResult?: (k: ErpResult['kind']) => void): Promise<Final> {
  let last = '';
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const result = await erp.record(op);
    onResult?.(result.kind);
    if (result.kind === 'recorded' || result.kind === 'refused') return result;
    if (result.kind === 'throttled') {
      last = 'ERP throttled every attempt (429)';
      await sleep(result.retryAfterMs + Math.random() * 50);
    } else {
      last = result.reason;
      await sleep(Math.min(5000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2));
    }
  }
  return { kind: 'exhausted', reason: `gave up after ${maxAttempts} attempts: ${last}`, attempts: maxAttempts };
}

export function orderWorkerRoutes({ publisher, erp, log, maxAttempts, onErpResult }: OrderWorkerOptions): Route[] {
  return [
    {
      filter: orderReadyForErp.topic,
      async handle(_topic, payload) {
        const decoded = decodeEvent(orderReadyForErp, payload);
        if (!decoded.ok) throw new PermanentFailure(decoded.reason);
        const { id, data } = decoded.event;
        const final = await recordWithRetry(
          erp,
          { operationId: `order:${data.orderId}`, kind: 'order', payload: { orderId: data.orderId, customer: data.customer, items: data.items } },
          maxAttempts,
          onErpResult,
        );
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
