// An order's journey hop by hop, recorded by the services themselves, so that "where is my order,
// and why is it slow?" has an answer without a trace backend (GET /api/orders/{id}/timeline). Each
// stage adds the hops it saw to the event it passes on (a routing slip: the stock service's to
// stock/reserved, the worker's to the outcome), and the orders service keeps them with the order.
// Spans (lib/tracing.ts) tell the same story to a trace backend when one is configured.
import { z } from 'zod';

/** What a hop may say besides its name and times: a few short facts (HTTP status, Retry-After, result). */
const detail = z.record(z.string().regex(/^[a-zA-Z][a-zA-Z0-9]{0,31}$/), z.union([z.string().max(200), z.number(), z.boolean()]));

export const hopSchema = z.strictObject({
  /** What happened: `wait in queue`, `stock reservation`, `wait for pace`, `erp attempt`, … */
  name: z.string().regex(/^[a-z][a-z0-9 ]{0,39}$/),
  /** The process that saw it. */
  service: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/),
  start: z.iso.datetime(),
  durationMs: z.number().min(0).max(7 * 24 * 3600 * 1000),
  detail: detail.refine((d) => Object.keys(d).length <= 8, 'at most 8 facts').optional(),
});
export type Hop = z.infer<typeof hopSchema>;

/** How many hops an event carries at most: a worker's attempts are bounded (WORKER_MAX_ATTEMPTS), and so is this. */
export const MAX_HOPS = 64;
export const hopsSchema = z.array(hopSchema).max(MAX_HOPS);

/** A hop from `start` (epoch ms) to `end` (default: now). */
export function hop(name: string, service: string, start: number, end = Date.now(), facts?: Hop['detail']): Hop {
  return { name, service, start: new Date(start).toISOString(), durationMs: Math.max(0, end - start), ...(facts ? { detail: facts } : {}) };
}

/** The time an event waited between being made (its CloudEvent `time`) and being handled here. */
export function queueWait(service: string, eventTime: string, topic: string): Hop {
  const made = Date.parse(eventTime);
  const now = Date.now();
  return hop('wait in queue', service, Math.min(Number.isFinite(made) ? made : now, now), now, { topic });
}

/** The hops an event carries on: the earlier ones first, never more than MAX_HOPS (the latest kept). */
export function journey(earlier: readonly Hop[] | undefined, ...own: Hop[]): Hop[] {
  return [...(earlier ?? []), ...own].slice(-MAX_HOPS);
}
