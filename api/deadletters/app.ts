// The dead-letter admin API: list and read the stored dead letters, replay one or many (their
// original events go out again, same event ids, through the outbox), delete one. Every route takes
// the admin key: dead letters may hold personal data.
import { createRoute, z } from '@hono/zod-openapi';
import { requireAdminKey, withAdminKey } from '../../lib/admin-key.js';
import { adminResponses, adminSecurity, cursors, nextCursor, pageOf, pageQuery, problemResponse, registerAdminScheme, uuidParam } from '../../lib/api-docs.js';
import { createApp, limitBody, problem, type Readiness } from '../../lib/http.js';
import type { Logger } from '../../lib/log.js';
import type { Metrics } from '../../lib/metrics.js';
import type { DeadLetter, DeadLetterStore } from './store.js';

export interface DeadLetterAppOptions {
  store: DeadLetterStore;
  log: Logger;
  metrics: Metrics;
  ready: Readiness;
  /** Unset disables every route (503). */
  adminApiKey?: string | undefined;
  /** After replays were committed to the outbox: wake the relay, count them. */
  onReplayed?: (letters: DeadLetter[]) => void;
}

/** Most dead letters one batch replay sends. */
export const REPLAY_BATCH_MAX = 1000;

const DeadLetterSchema = z
  .object({
    id: z.uuid().openapi({ description: "the dead letter's own id" }),
    consumer: z.string().openapi({ description: 'the consumer that gave up on the message (orders, stock, order-workers, stock-workers, …)' }),
    topic: z.string().openapi({ description: 'where the original was published, and where a replay publishes it' }),
    reason: z.string(),
    attempts: z.number().int().nullable(),
    eventId: z.string().nullable().openapi({ description: "the original's CloudEvent id: a replay keeps it, so consumers apply it once" }),
    payload: z.string().openapi({ description: 'the original payload (UTF-8), cut at 32 KiB' }),
    payloadBytes: z.number().int(),
    replayable: z.boolean().openapi({ description: 'the whole original, a CloudEvent, on a topic consumers read work from' }),
    source: z.string(),
    deadAt: z.string(),
    storedAt: z.string(),
    replayedAt: z.string().nullable(),
  })
  .openapi('DeadLetter');

const consumerName = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,64}$/, '1-64 letters, digits, dots, dashes or underscores')
  .openapi({ example: 'order-workers' });
const reasonPrefix = z.string().min(1).max(200).openapi({ description: 'dead letters whose reason starts with this', example: 'gave up' });
const filterQuery = {
  consumer: consumerName.optional().openapi({ param: { name: 'consumer', in: 'query' } }),
  reason: reasonPrefix.optional().openapi({ param: { name: 'reason', in: 'query' } }),
};
const idParams = z.object({ id: uuidParam('id') });

const listDeadLetters = createRoute({
  method: 'get',
  path: '/api/deadletters',
  summary: 'Dead letters, newest first, one page at a time (admin)',
  security: adminSecurity,
  request: { query: z.object({ ...pageQuery(cursors.position), ...filterQuery }) },
  responses: {
    200: { description: 'One page of dead letters', content: { 'application/json': { schema: pageOf(DeadLetterSchema, 'DeadLetterPage') } } },
    400: problemResponse('Invalid query or cursor'),
    ...adminResponses,
  },
});

const replayDeadLetters = createRoute({
  method: 'post',
  path: '/api/deadletters',
  summary: 'Replay every waiting dead letter that matches (admin): by consumer, by reason, or both',
  description: `Replays the replayable dead letters not replayed yet, oldest first, at most ${REPLAY_BATCH_MAX} per request (ask again for more); an empty object takes them all. Answers how many were sent.`,
  security: adminSecurity,
  request: {
    body: {
      content: { 'application/json': { schema: z.strictObject({ consumer: consumerName.optional(), reason: reasonPrefix.optional() }).openapi('DeadLetterReplay') } },
      required: true,
    },
  },
  responses: {
    200: {
      description: 'How many were replayed, and whether more are waiting',
      content: { 'application/json': { schema: z.object({ replayed: z.number().int(), more: z.boolean() }).openapi('DeadLetterReplayCount') } },
    },
    400: problemResponse('Invalid filter'),
    413: problemResponse('Body over 16 KiB'),
    ...adminResponses,
  },
});

const getDeadLetter = createRoute({
  method: 'get',
  path: '/api/deadletters/{id}',
  summary: 'One dead letter (admin)',
  security: adminSecurity,
  request: { params: idParams },
  responses: {
    200: { description: 'The dead letter', content: { 'application/json': { schema: DeadLetterSchema } } },
    400: problemResponse('Malformed id'),
    404: problemResponse('No such dead letter'),
    ...adminResponses,
  },
});

const deleteDeadLetter = createRoute({
  method: 'delete',
  path: '/api/deadletters/{id}',
  summary: 'Forget a dead letter (admin), e.g. once its cause is dealt with by hand',
  security: adminSecurity,
  request: { params: idParams },
  responses: { 204: { description: 'Deleted' }, 400: problemResponse('Malformed id'), 404: problemResponse('No such dead letter'), ...adminResponses },
});

const replayDeadLetter = createRoute({
  method: 'post',
  path: '/api/deadletters/{id}/replay',
  summary: 'Replay one dead letter (admin): its original event is published again on its topic, once, under the same event id',
  security: adminSecurity,
  request: { params: idParams },
  responses: {
    202: { description: 'Replayed: the event is on its way (the outbox publishes it)', content: { 'application/json': { schema: DeadLetterSchema } } },
    400: problemResponse('Malformed id'),
    404: problemResponse('No such dead letter'),
    409: problemResponse('Already replayed (a replay that fails again makes a new dead letter)'),
    422: problemResponse('Not replayable: cut, not a CloudEvent, or from a topic no consumer reads work from'),
    ...adminResponses,
  },
});

export function createDeadLetterApp({ store, log, metrics, ready, adminApiKey, onReplayed }: DeadLetterAppOptions) {
  const app = createApp({ log, metrics, ready });
  const admin = requireAdminKey(adminApiKey, log);
  registerAdminScheme(app);
  app.use('/api/deadletters', limitBody(16 * 1024));
  app.doc31('/api/deadletters/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'Woodytoys dead letters',
      version: '1.0.0',
      description:
        'Every message a consumer could not process (invalid, or its ERP attempts spent on transient failures: then the order or movement is parked), kept until an operator replays or deletes it. A replay publishes the original event again on its topic, once, under the same event id.',
    },
  });

  app.openapi(withAdminKey(listDeadLetters, admin), (c) => {
    const { limit, cursor, consumer, reason } = c.req.valid('query');
    const page = store.list({ consumer, reason }, { before: cursor, limit });
    return c.json({ items: page.items, nextCursor: nextCursor(page.more, page.last) }, 200);
  });

  app.openapi(withAdminKey(replayDeadLetters, admin), (c) => {
    const filter = c.req.valid('json');
    const { letters, more } = store.replayMany(filter, REPLAY_BATCH_MAX);
    onReplayed?.(letters);
    log.info({ ...filter, replayed: letters.length, more }, 'dead letters replayed');
    return c.json({ replayed: letters.length, more }, 200);
  });

  app.openapi(withAdminKey(getDeadLetter, admin), (c) => {
    const found = store.get(c.req.valid('param').id);
    if (!found) return problem(404, 'Not Found', 'no dead letter with this id');
    return c.json(found, 200);
  });

  app.openapi(withAdminKey(deleteDeadLetter, admin), (c) => {
    if (!store.remove(c.req.valid('param').id)) return problem(404, 'Not Found', 'no dead letter with this id');
    return c.body(null, 204);
  });

  app.openapi(withAdminKey(replayDeadLetter, admin), (c) => {
    const result = store.replay(c.req.valid('param').id);
    if (result.kind === 'unknown') return problem(404, 'Not Found', 'no dead letter with this id');
    if (result.kind === 'already-replayed') return problem(409, 'Conflict', `replayed at ${result.letter.replayedAt}`);
    if (result.kind === 'not-replayable') return problem(422, 'Not replayable', 'the payload is cut or not a CloudEvent, or its topic is not one a consumer reads work from');
    onReplayed?.([result.letter]);
    log.info({ id: result.letter.id, consumer: result.letter.consumer, topic: result.letter.topic, eventId: result.letter.eventId }, 'dead letter replayed');
    return c.json(result.letter, 202);
  });

  return app;
}
