// Each order's timeline (lib/timeline.ts): the hops the services recorded, kept by the orders
// service under the order's public reference, so that the dashboard (which knows orders only by
// that reference) can show it, and nothing personal is in it. One row per stage: the accept, whose
// outbox publish ends when the broker acknowledges the event, and each outcome event with the hops
// it carried (stock, worker) and the orders service's own wait and apply.
import type { DB } from '../../lib/db.js';
import { hop, hopsSchema, type Hop } from '../../lib/timeline.js';
import { publicOrderRef } from '../../lib/topics.js';

export const timelineMigration = `
CREATE TABLE order_timeline (
  id INTEGER PRIMARY KEY,
  ref TEXT NOT NULL,
  hops TEXT NOT NULL,
  trace_id TEXT,
  outbox_id INTEGER,
  published_ms INTEGER
);
CREATE INDEX order_timeline_ref ON order_timeline (ref);
CREATE INDEX order_timeline_outbox ON order_timeline (outbox_id) WHERE outbox_id IS NOT NULL;
`;

interface Row {
  hops: string;
  trace_id: string | null;
  outbox_id: number | null;
  published_ms: number | null;
}

const statements = (db: DB) => ({
  insert: db.prepare<[ref: string, hops: string, traceId: string | null, outboxId: number | null]>('INSERT INTO order_timeline (ref, hops, trace_id, outbox_id) VALUES (?, ?, ?, ?)'),
  published: db.prepare<[at: number, outboxId: number]>('UPDATE order_timeline SET published_ms = ? WHERE outbox_id = ?'),
  of: db.prepare<[ref: string], Row>('SELECT hops, trace_id, outbox_id, published_ms FROM order_timeline WHERE ref = ? ORDER BY id'),
});

export interface Timeline {
  ref: string;
  /** The W3C trace id the order was accepted in (a client's traceparent, or one made for it). */
  traceId: string | null;
  /** Oldest first; a hop still under way (the outbox publish before the broker's PUBACK) has no durationMs. */
  hops: (Omit<Hop, 'durationMs'> & { durationMs: number | null })[];
}

export class OrderTimelines {
  readonly #sql: ReturnType<typeof statements>;

  constructor(db: DB) {
    this.#sql = statements(db);
  }

  /**
   * Inside the order's transaction: its accept (from the request to the event that announces it),
   * and the outbox row whose publish follows.
   */
  accepted(orderId: string, start: number, announced: number, outboxId: number, traceId: string | undefined): void {
    this.#sql.insert.run(publicOrderRef(orderId), JSON.stringify([hop('accept', 'orders', start, announced)]), traceId ?? null, outboxId);
  }

  /** Outbox rows the broker acknowledged at `at` (the relay's onSent, inside its transaction). */
  published(outboxIds: readonly number[], at: number): void {
    for (const id of outboxIds) this.#sql.published.run(at, id);
  }

  /** Inside an outcome's transaction: the hops its event carried, and ours. */
  recorded(orderId: string, hops: readonly Hop[]): void {
    this.#sql.insert.run(publicOrderRef(orderId), JSON.stringify(hops), null, null);
  }

  /** The order's hops by start time, or undefined when nothing is recorded for `ref`. */
  get(ref: string): Timeline | undefined {
    const rows = this.#sql.of.all(ref);
    if (rows.length === 0) return undefined;
    const hops: Timeline['hops'] = [];
    for (const row of rows) {
      // Written by this service from validated events; parsed again so that a bad row cannot reach a client.
      const stage = hopsSchema.safeParse(JSON.parse(row.hops));
      if (!stage.success) continue;
      hops.push(...stage.data);
      if (row.outbox_id !== null) {
        const accept = stage.data[0]!;
        const start = Date.parse(accept.start) + accept.durationMs;
        hops.push({ name: 'outbox publish', service: 'orders', start: new Date(start).toISOString(), durationMs: row.published_ms === null ? null : Math.max(0, row.published_ms - start) });
      }
    }
    // Stable: hops that start together keep the order they were recorded in.
    hops.sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
    return { ref, traceId: rows.find((r) => r.trace_id !== null)?.trace_id ?? null, hops };
  }
}

/**
 * A timeline as anyone who knows an order's public reference may read it (the dashboard, IoT
 * subscribers of the public topics): the hops and their facts, but neither the trace id (the
 * client's own traceparent, which it may reuse) nor the text of an ERP error (which may quote the
 * order's data back).
 */
export function publicTimeline(timeline: Timeline): Timeline {
  const hops = timeline.hops.map(({ detail, ...rest }) => {
    if (!detail) return rest;
    const { error: _error, ...facts } = detail;
    return { ...rest, detail: facts };
  });
  return { ref: timeline.ref, traceId: null, hops };
}
