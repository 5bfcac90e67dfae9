// The dead-letter service's SQL: every dead letter, kept once per dead-letter event id, and the
// outbox that replays one (its original event, on its original topic) in the transaction that marks
// it replayed, so a replay is sent once even if the process dies right after the request.
import { openDatabase, type DB } from '../../lib/db.js';
import { envelopeSchema, type CloudEvent, type EventData } from '../../lib/events.js';
import { enqueueEvent, outboxMigration } from '../../lib/outbox.js';
import { replayableTopics, type deadLetter } from '../../lib/topics.js';

export const SOURCE = '/woodytoys/deadletters';

const migrations = [
  `CREATE TABLE dead_letters (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     id TEXT NOT NULL UNIQUE,
     consumer TEXT NOT NULL,
     topic TEXT NOT NULL,
     reason TEXT NOT NULL,
     attempts INTEGER,
     event_id TEXT,
     payload TEXT NOT NULL,
     payload_bytes INTEGER NOT NULL,
     replayable INTEGER NOT NULL,
     source TEXT NOT NULL,
     dead_at TEXT NOT NULL,
     stored_at TEXT NOT NULL,
     replayed_at TEXT
   );
   CREATE INDEX dead_letters_consumer ON dead_letters (consumer, seq);
   CREATE INDEX dead_letters_waiting ON dead_letters (seq) WHERE replayed_at IS NULL AND replayable = 1;
   ${outboxMigration}`,
];

export type DeadLetterData = EventData<typeof deadLetter>;

export interface DeadLetter {
  id: string;
  consumer: string;
  topic: string;
  reason: string;
  attempts: number | null;
  eventId: string | null;
  payload: string;
  payloadBytes: number;
  /** Whether a replay can send it again: the whole original, a CloudEvent, on a replayable topic. */
  replayable: boolean;
  source: string;
  deadAt: string;
  storedAt: string;
  replayedAt: string | null;
}

interface DeadLetterRow {
  seq: number;
  id: string;
  consumer: string;
  topic: string;
  reason: string;
  attempts: number | null;
  event_id: string | null;
  payload: string;
  payload_bytes: number;
  replayable: number;
  source: string;
  dead_at: string;
  stored_at: string;
  replayed_at: string | null;
}

const toDeadLetter = (r: DeadLetterRow): DeadLetter => ({
  id: r.id,
  consumer: r.consumer,
  topic: r.topic,
  reason: r.reason,
  attempts: r.attempts,
  eventId: r.event_id,
  payload: r.payload,
  payloadBytes: r.payload_bytes,
  replayable: r.replayable === 1,
  source: r.source,
  deadAt: r.dead_at,
  storedAt: r.stored_at,
  replayedAt: r.replayed_at,
});

/** Which dead letters a list or a batch replay takes: one consumer's, and/or those whose reason starts so. */
export interface Filter {
  consumer?: string | undefined;
  reason?: string | undefined;
}

export type ReplayResult = { kind: 'replayed'; letter: DeadLetter } | { kind: 'unknown' } | { kind: 'already-replayed'; letter: DeadLetter } | { kind: 'not-replayable'; letter: DeadLetter };

/**
 * A dead letter can be replayed when it holds the whole original payload, that payload is a
 * CloudEvent (so consumers recognise it by its id), and its topic is one our consumers read work
 * from (lib/topics.ts, and the ACL's write rules for the dead-letter service).
 */
export function isReplayable(data: Pick<DeadLetterData, 'topic' | 'payload' | 'payloadBytes'>): boolean {
  if (!replayableTopics.includes(data.topic) || Buffer.byteLength(data.payload) !== data.payloadBytes) return false;
  try {
    return envelopeSchema.safeParse(JSON.parse(data.payload)).success;
  } catch {
    return false;
  }
}

const where = ({ consumer, reason }: Filter) => {
  const clauses: string[] = [];
  const params: string[] = [];
  if (consumer !== undefined) {
    clauses.push('consumer = ?');
    params.push(consumer);
  }
  if (reason !== undefined) {
    // A prefix: reasons carry details (attempt counts, statuses) after their kind.
    clauses.push("substr(reason, 1, length(?)) = ?");
    params.push(reason, reason);
  }
  return { sql: clauses.map((c) => ` AND ${c}`).join(''), params };
};

/** Every statement on dead letters, with the shape of its parameters and rows: the one place they are typed. */
const statements = (db: DB) => ({
  one: db.prepare<[id: string], DeadLetterRow>('SELECT * FROM dead_letters WHERE id = ?'),
  /** Newest first; the filter's conditions (see `where`) between the position and the limit. */
  page: (filter: string) => db.prepare<(string | number)[], DeadLetterRow>(`SELECT * FROM dead_letters WHERE seq < ?${filter} ORDER BY seq DESC LIMIT ?`),
  /** Waiting and replayable, oldest first; the filter's values, then the limit. */
  waiting: (filter: string) => db.prepare<(string | number)[], DeadLetterRow>(`SELECT * FROM dead_letters WHERE replayed_at IS NULL AND replayable = 1${filter} ORDER BY seq LIMIT ?`),
  countByConsumer: db.prepare<[], { consumer: string; waiting: number; replayed: number }>(
    'SELECT consumer, count(*) - count(replayed_at) AS waiting, count(replayed_at) AS replayed FROM dead_letters GROUP BY consumer',
  ),
  insert: db.prepare<
    [id: string, consumer: string, topic: string, reason: string, attempts: number | null, eventId: string | null, payload: string, payloadBytes: number, replayable: 0 | 1, source: string, deadAt: string, storedAt: string]
  >(
    `INSERT INTO dead_letters (id, consumer, topic, reason, attempts, event_id, payload, payload_bytes, replayable, source, dead_at, stored_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
  ),
  markReplayed: db.prepare<[replayedAt: string, seq: number]>('UPDATE dead_letters SET replayed_at = ? WHERE seq = ?'),
  remove: db.prepare<[id: string]>('DELETE FROM dead_letters WHERE id = ?'),
});

export class DeadLetterStore {
  readonly db: DB;
  readonly #sql: ReturnType<typeof statements>;

  constructor(file: string) {
    this.db = openDatabase(file, { migrations });
    this.#sql = statements(this.db);
  }

  /** Keeps a dead letter once, whatever how often it is delivered: true when it is new. */
  store(id: string, source: string, time: string, data: DeadLetterData): boolean {
    const stored = this.#sql.insert.run(id, data.consumer, data.topic, data.reason, data.attempts ?? null, data.eventId ?? null, data.payload, data.payloadBytes, isReplayable(data) ? 1 : 0, source, time, new Date().toISOString());
    return stored.changes === 1;
  }

  get(id: string): DeadLetter | undefined {
    const row = this.#sql.one.get(id);
    return row && toDeadLetter(row);
  }

  /** Newest first; `before` is the position of the last dead letter of the previous page. */
  list(filter: Filter, { before, limit }: { before?: number | undefined; limit: number }): { items: DeadLetter[]; more: boolean; last?: number } {
    const w = where(filter);
    const rows = this.#sql.page(w.sql).all(before ?? Number.MAX_SAFE_INTEGER, ...w.params, limit + 1);
    const page = rows.slice(0, limit);
    return { items: page.map(toDeadLetter), more: rows.length > limit, ...(page.length ? { last: page.at(-1)!.seq } : {}) };
  }

  /**
   * Replays one dead letter, once: it is marked replayed and its original event goes into the
   * outbox in one transaction; the relay publishes it (a new delivery, the same event id).
   */
  replay(id: string): ReplayResult {
    return this.db.transaction((): ReplayResult => {
      const row = this.#sql.one.get(id);
      if (!row) return { kind: 'unknown' };
      if (row.replayed_at !== null) return { kind: 'already-replayed', letter: toDeadLetter(row) };
      if (row.replayable !== 1) return { kind: 'not-replayable', letter: toDeadLetter(row) };
      return { kind: 'replayed', letter: this.markReplayed(row) };
    })();
  }

  /** Replays the waiting, replayable dead letters the filter takes, oldest first, at most `limit`; `more` if others wait. */
  replayMany(filter: Filter, limit: number): { letters: DeadLetter[]; more: boolean } {
    return this.db.transaction(() => {
      const w = where(filter);
      const rows = this.#sql.waiting(w.sql).all(...w.params, limit + 1);
      return { letters: rows.slice(0, limit).map((r) => this.markReplayed(r)), more: rows.length > limit };
    })();
  }

  remove(id: string): boolean {
    return this.#sql.remove.run(id).changes === 1;
  }

  /** Dead letters per consumer: waiting (not replayed yet) and replayed. */
  countByConsumer(): Record<string, { waiting: number; replayed: number }> {
    const counts: Record<string, { waiting: number; replayed: number }> = {};
    for (const r of this.#sql.countByConsumer.all()) counts[r.consumer] = { waiting: r.waiting, replayed: r.replayed };
    return counts;
  }

  private markReplayed(row: DeadLetterRow): DeadLetter {
    const now = new Date().toISOString();
    this.#sql.markReplayed.run(now, row.seq);
    enqueueEvent(this.db, row.topic, JSON.parse(row.payload) as CloudEvent);
    return toDeadLetter({ ...row, replayed_at: now });
  }

  close(): void {
    this.db.close();
  }
}
