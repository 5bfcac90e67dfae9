// What the dead-letter service consumes, in its shared group `deadletters`: every dead letter of
// every consumer. Storing one is a write to its own database, so the messages in hand commit
// together and each is acknowledged only after that commit; the dead letter's id keeps it once.
import type { Logger } from '../../lib/log.js';
import { PermanentFailure, eventRoute, type Route } from '../../lib/mqtt.js';
import { SHARED_GROUPS, deadLetter, deadLetterConsumer, shareOf } from '../../lib/topics.js';
import type { DeadLetterStore } from './store.js';

export const GROUP = 'deadletters';

/** The shared subscription that takes every dead letter, each by one member of the group. */
export const deadLetterSubscription = shareOf(GROUP, SHARED_GROUPS[GROUP][0]);

export interface DeadLetterConsumerOptions {
  store: DeadLetterStore;
  log: Logger;
  /** After a dead letter is stored for the first time (metrics). */
  onStored?: (consumer: string) => void;
}

export function deadLetterRoutes({ store, log, onStored }: DeadLetterConsumerOptions): Route[] {
  return [
    eventRoute(deadLetter, {
      apply({ id, source, time, data }, topic) {
        // A consumer speaks for itself only: its topic names it.
        if (data.consumer !== deadLetterConsumer(topic)) throw new PermanentFailure(`a dead letter of ${data.consumer} published on ${topic}`);
        if (!store.store(id, source, time, data)) return;
        onStored?.(data.consumer);
        log.info({ id, consumer: data.consumer, topic: data.topic, reason: data.reason }, 'dead letter stored');
      },
    }),
  ];
}
