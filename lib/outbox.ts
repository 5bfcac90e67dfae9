// Transactional outbox: a service writes its state change and the event announcing it in one SQLite
// transaction; the relay publishes unsent rows with QoS 1 and marks each sent only on its PUBACK.
// While the broker is away rows simply accumulate, and the relay drains them when it is back.
import { Gauge, type Registry } from 'prom-client';
import type { DB } from './db.js';
import type { CloudEvent } from './events.js';
import type { Logger } from './log.js';
import { committed, uncommitted } from './group-commit.js';
import { publishEvent, type MqttClient } from './mqtt.js';
import { publishSpan } from './tracing.js';
import { SpanStatusCode } from '@opentelemetry/api';

/** Add to a service's migrations to give it an outbox. */
export const outboxMigration = `
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL,
  payload TEXT NOT NULL,
  retain INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  sent_at INTEGER
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
`;

/** Call inside the transaction that makes the change the event announces; returns the row's id. */
export function enqueueEvent(db: DB, topic: string, event: CloudEvent, { retain = false } = {}): number {
  return Number(
    db.prepare('INSERT INTO outbox (topic, payload, retain, created_at) VALUES (?, ?, ?, ?)').run(topic, JSON.stringify(event), retain ? 1 : 0, Date.now()).lastInsertRowid,
  );
}

interface Row {
  id: number;
  topic: string;
  payload: string;
  retain: number;
  created_at: number;
}

/** The relay's statements, with the types of their parameters and rows (prepared once per relay). */
const statements = (db: DB) => ({
  pending: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL'),
  next: db.prepare<[after: number, limit: number], Row>('SELECT id, topic, payload, retain, created_at FROM outbox WHERE sent_at IS NULL AND id > ? ORDER BY id LIMIT ?'),
  markSent: db.prepare<[sentAt: number, id: number]>('UPDATE outbox SET sent_at = ? WHERE id = ?'),
  prune: db.prepare<[before: number]>('DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?'),
});

export interface RelayOptions {
  db: DB;
  client: MqttClient;
  log: Logger;
  /** How many publishes may await their PUBACK at once. */
  window?: number;
  /** Safety-net poll; wake() makes a fresh row go out at once. */
  pollMs?: number;
  /** Sent rows are kept this long (for inspection), then deleted. */
  keepSentMs?: number;
  /** Where to export `outbox_pending`, the rows written but not yet acknowledged by the broker. */
  registry?: Registry;
  /** Rows the broker acknowledged, and when: called inside the transaction that marks them sent. */
  onSent?: (ids: readonly number[], at: number) => void;
  /**
   * Nothing is published before this settles: the process's own consumer has subscribed once, so
   * the answers to what it publishes have somewhere to wait (README, "First start").
   */
  holdUntil?: Promise<unknown>;
}

export class OutboxRelay {
  private readonly db: DB;
  private readonly client: MqttClient;
  private readonly log: Logger;
  private readonly window: number;
  private readonly pollMs: number;
  private readonly keepSentMs: number;
  private readonly sql: ReturnType<typeof statements>;
  private readonly onSent: RelayOptions['onSent'];
  private readonly inFlight = new Set<number>();
  private readonly acked: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private scheduled = false;
  private awaitingCommit = false;
  /** The last row handed to the broker on this connection. */
  private after = 0;
  private running = false;
  private holding = false;
  private readonly onConnect = () => {
    // A new connection: publishes still awaiting a PUBACK from the old one may never get it.
    // Forget them and send again; consumers are idempotent on the event id.
    this.inFlight.clear();
    this.after = 0;
    this.wake();
  };

  constructor({ db, client, log, window = 256, pollMs = 250, keepSentMs = 60 * 60 * 1000, registry, onSent, holdUntil }: RelayOptions) {
    this.db = db;
    if (holdUntil) {
      this.holding = true;
      const release = () => {
        this.holding = false;
        this.wake();
      };
      holdUntil.then(release, release);
    }
    this.onSent = onSent;
    this.sql = statements(db);
    this.client = client;
    this.log = log;
    this.window = window;
    this.pollMs = pollMs;
    this.keepSentMs = keepSentMs;
    if (registry) {
      const pending = () => this.pending();
      new Gauge({
        name: 'outbox_pending',
        help: 'Events written but not yet acknowledged by the broker',
        registers: [registry],
        collect() {
          this.set(pending());
        },
      });
    }
  }

  start(): void {
    this.running = true;
    this.client.on('connect', this.onConnect);
    this.timer = setInterval(() => this.wake(), this.pollMs);
    this.pruneTimer = setInterval(() => this.prune(), 60_000);
    this.timer.unref();
    this.pruneTimer.unref();
    this.wake();
  }

  /** Rows not yet acknowledged by the broker. */
  pending(): number {
    return this.sql.pending.get()!.n;
  }

  wake(): void {
    if (this.scheduled || !this.running) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (!this.running || this.holding || !this.client.connected) return;
    // Rows of a turn not yet committed (lib/group-commit.ts) are not events yet: right after the
    // commit, before anything can open the next turn. (Waiting for a turn with nothing open never
    // comes while requests keep arriving: each turn opens before the relay's next look.)
    if (uncommitted(this.db)) {
      if (!this.awaitingCommit) {
        this.awaitingCommit = true;
        committed(this.db)
          .catch(() => undefined)
          .then(() => {
            this.awaitingCommit = false;
            this.pump();
          });
      }
      return;
    }
    const room = this.window - this.inFlight.size;
    if (room <= 0) return;
    // Only rows after the last one handed out: those before it are in flight or sent.
    const rows = this.sql.next.all(this.after, room);
    for (const row of rows) {
      this.inFlight.add(row.id);
      this.after = row.id;
      // The stored JSON as it is: parsing and serializing it again would give the same bytes.
      const span = publishSpan(row.payload, row.topic, row.created_at);
      publishEvent(this.client, row.topic, row.payload, { retain: row.retain === 1 }).then(
        () => {
          span?.end();
          this.markSent(row.id);
        },
        (err: Error) => {
          span?.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
          span?.end();
          this.inFlight.delete(row.id);
          this.after = Math.min(this.after, row.id - 1);
          this.log.warn({ err: err.message, outboxId: row.id }, 'outbox publish failed; will retry');
        },
      );
    }
  }

  private markSent(id: number): void {
    // The row stays in flight until its UPDATE is done: until then a pump would select it again
    // (sent_at is still NULL) and publish it twice.
    this.acked.push(id);
    if (this.acked.length === 1) {
      // Group the UPDATEs of acks that arrive together into one transaction.
      setImmediate(() => {
        this.flushAcked();
        this.wake();
      });
    }
  }

  private flushAcked(): void {
    const ids = this.acked.splice(0);
    if (ids.length === 0 || !this.db.open) return;
    const now = Date.now();
    const stmt = this.sql.markSent;
    this.db.transaction(() => {
      ids.forEach((i) => stmt.run(now, i));
      this.onSent?.(ids, now);
    })();
    for (const i of ids) this.inFlight.delete(i);
  }

  private prune(): void {
    this.sql.prune.run(Date.now() - this.keepSentMs);
  }

  /** Stops publishing and waits (bounded) for publishes already sent to be acknowledged. */
  async stop(timeoutMs = 2000): Promise<void> {
    this.running = false;
    clearInterval(this.timer);
    clearInterval(this.pruneTimer);
    this.client.off('connect', this.onConnect);
    const deadline = Date.now() + timeoutMs;
    while (this.inFlight.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.flushAcked();
  }
}
