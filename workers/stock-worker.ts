// The stock-movement worker's handler: record each movement of a bulk stock import in the ERP, then
// publish its outcome. Like the order worker, the outcome's event id is derived from the input
// event's, so a redelivered movement produces the very same outcome event. As for orders, attempts
// that ran out on transient failures park the movement (outcome `parked`), not fail it.
import { createEvent, deriveId } from '../lib/events.js';
import type { Logger } from '../lib/log.js';
import { PermanentFailure, eventRoute, publishEvent, type MqttClient, type Route } from '../lib/mqtt.js';
import { stockMovement, stockMovementProcessed } from '../lib/topics.js';
import { SOURCE } from './order-worker.js';
import type { RecordInErp } from './paced-erp.js';

export interface StockWorkerOptions {
  /** The publishing connection, not the consuming one. */
  publisher: MqttClient;
  /** Records an operation in the ERP, paced and retried (see paced-erp.ts). */
  record: RecordInErp;
  log: Logger;
}

/** The ERP operation id of a movement: unique system-wide, so a retried movement is recorded once. */
export const movementOperationId = (movementId: string) => `movement:${movementId}`;

export function stockWorkerRoutes({ publisher, record, log }: StockWorkerOptions): Route[] {
  return [
    eventRoute(stockMovement, {
      async handle({ id, data }) {
        const final = await record({ operationId: movementOperationId(data.movementId), kind: 'stock-movement', payload: { ...data } });
        const base = { importId: data.importId, movementId: data.movementId };
        const subject = data.movementId;
        if (final.kind === 'recorded') {
          const event = createEvent(stockMovementProcessed, { ...base, outcome: 'recorded', erpReference: final.reference }, { source: SOURCE, id: deriveId(id, 'recorded'), subject });
          await publishEvent(publisher, stockMovementProcessed.topic, event);
          log.debug({ movementId: data.movementId, duplicate: final.duplicate }, 'movement recorded in ERP');
          return;
        }
        const reason = final.reason.slice(0, 500);
        const outcome = final.kind === 'exhausted' ? 'parked' : 'failed';
        // A parking is a fact of its own (a replay may park it again): a fresh event id.
        const event = createEvent(stockMovementProcessed, { ...base, outcome, reason }, { source: SOURCE, subject, ...(outcome === 'failed' ? { id: deriveId(id, 'failed') } : {}) });
        await publishEvent(publisher, stockMovementProcessed.topic, event);
        if (final.kind === 'exhausted') throw new PermanentFailure(final.reason, final.attempts);
        log.info({ movementId: data.movementId, reason }, 'movement refused by ERP');
      },
    }),
  ];
}
