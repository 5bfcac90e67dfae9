// Durable ingest. Aedes writes the publisher's PUBACK before it routes (and stores) a message, so a
// crash right after the PUBACK would lose it. Here every publish is written first, in the same
// group-commit transaction as its copies for the shared-subscription queues; the PUBACK waits for
// that commit. The inbox row is cleared once Aedes has routed the message to every session (the
// `published` hook); rows still there at start are routed again.
import type { Aedes } from 'aedes';
import type { DB } from '../lib/db.js';
import type { Logger } from '../lib/log.js';
import type { CommitQueue } from './commit-queue.js';
import type { SharedSubscriptions } from './group-queue.js';
import type { SqlitePersistence, StoredPacket } from './persistence.js';

export class Ingest {
  readonly #inboxIds = new WeakMap<object, number>();
  #nextId = 1;
  readonly #sql;

  constructor(
    private readonly db: DB,
    private readonly commits: CommitQueue,
    private readonly shared: SharedSubscriptions,
    private readonly persistence: SqlitePersistence,
    private readonly log: Logger,
  ) {
    this.#sql = {
      put: db.prepare('INSERT INTO inbox (id, packet, payload) VALUES (?, ?, ?)'),
      del: db.prepare('DELETE FROM inbox WHERE id = ?'),
    };
    const max = db.prepare('SELECT max(id) AS id FROM inbox').get() as { id: number | null };
    this.#nextId = (max.id ?? 0) + 1;
  }

  /** Stores a publish (and its shared-subscription copies); resolves once committed. */
  async accept(packet: StoredPacket): Promise<void> {
    let staged: ReturnType<SharedSubscriptions['store']>;
    // Only what Aedes stores itself needs the inbox: retained messages and copies for persistent
    // sessions. Online clean sessions end with a crash anyway; shared copies are stored right here.
    const durable = (packet.qos ?? 0) > 0 && (packet.retain === true || this.persistence.hasSessionSubscriber(packet.topic ?? ''));
    const id = durable ? this.#nextId++ : 0;
    if (durable) this.#inboxIds.set(packet, id);
    // QoS 0 waits for the commit too: its shared-subscription copies are handed out after it.
    await this.commits.write(() => {
      if (durable) this.#sql.put.run(id, JSON.stringify({ topic: packet.topic, qos: packet.qos, retain: packet.retain ?? false }), packet.payload ?? null);
      staged = this.shared.store(packet);
    });
    if (staged) this.shared.release(staged);
  }

  /** Hooks into the broker: clear inbox rows once routed. (A publish the ACL refuses never gets here: main.ts closes the connection first.) */
  attach(broker: Aedes): void {
    broker.published = (packet, _client, done) => {
      const id = this.#inboxIds.get(packet);
      if (id !== undefined) this.commits.queue(() => this.#sql.del.run(id));
      done(null);
    };
  }

  /** Routes again what was acknowledged but maybe not routed before the last stop; at start, before clients connect. */
  async replay(broker: Aedes): Promise<number> {
    const rows = this.db.prepare('SELECT id, packet, payload FROM inbox ORDER BY id').all() as Array<{ id: number; packet: string; payload: Buffer | null }>;
    for (const r of rows) {
      const { topic, qos, retain } = JSON.parse(r.packet) as { topic: string; qos: 0 | 1 | 2; retain: boolean };
      await new Promise<void>((resolve, reject) =>
        broker.publish({ cmd: 'publish', topic, qos, retain, dup: false, payload: r.payload ?? Buffer.alloc(0) }, (err) => (err ? reject(err) : resolve())),
      );
      this.commits.queue(() => this.#sql.del.run(r.id));
    }
    if (rows.length > 0) this.log.info({ messages: rows.length }, 'routed messages acknowledged before the last stop');
    return rows.length;
  }
}
