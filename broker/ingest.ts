// Durable ingest. Aedes writes the publisher's PUBACK before it routes (and stores) a message, so a
// crash right after the PUBACK would lose it. Here every publish is written first, in the same
// group-commit transaction as its copies for the shared-subscription queues; the PUBACK waits for
// that commit. Aedes hands over every publish of a socket read at once: they are gathered and
// committed together, one transaction per turn of the event loop. The inbox row is cleared once
// Aedes has routed the message to every session (whenRouted, aedes-adapter.ts); rows still there at
// start are routed again.
import type { Aedes, Client } from 'aedes';
import { readAhead, whenRouted } from './aedes-adapter.js';
import type { DB } from '../lib/db.js';
import type { Logger } from '../lib/log.js';
import type { CommitQueue } from './commit-queue.js';
import type { SharedSubscriptions } from './group-queue.js';
import type { NewEntry } from './group-store.js';
import type { SessionPersistence, StoredPacket } from './persistence.js';

type PublishDone = (err?: Error | null) => void;

interface InboxRow {
  id: number;
  packet: string;
  payload: Buffer | null;
}
const ALL_ROWS = 'SELECT id, packet, payload FROM inbox ORDER BY id';

/**
 * How far a publisher is read ahead of its PUBACKs (readAhead, aedes-adapter.ts): its publishes
 * not acknowledged yet, in count and in bytes. Past either, Aedes reads it on as its publishes are
 * done, one read at a time, as without read-ahead.
 */
export const READ_AHEAD = { publishes: 1024, bytes: 2 * 1024 * 1024 };

interface Ahead {
  client: Client;
  /** Counts the publish again in Aedes's read (readAhead's return), once it was counted off. */
  recount?: () => void;
}

/** The publishes of one turn, committed together. */
interface Turn {
  dones: PublishDone[];
  /** Publishes whose connection is read on before they are done (at the commit, after Aedes's parse). */
  ahead: Ahead[];
  inbox: Array<[number, string, Buffer | string | null]>;
  staged: NewEntry[];
}

export class Ingest {
  #turn: Turn | undefined;
  readonly #inboxIds = new WeakMap<object, number>();
  #nextId = 1;
  /** Each publisher's publishes read ahead of their PUBACKs. */
  readonly #ahead = new WeakMap<Client, { publishes: number; bytes: number }>();
  /** Settles once every turn so far has had its publishes acknowledged (or refused). */
  #settled: Promise<unknown> = Promise.resolve();
  readonly #sql;

  constructor(
    private readonly db: DB,
    private readonly commits: CommitQueue,
    private readonly shared: SharedSubscriptions,
    private readonly persistence: SessionPersistence,
    private readonly log: Logger,
  ) {
    // The inbox's statements, with the types of their parameters and rows: the one place rows are typed.
    this.#sql = {
      put: db.prepare<[id: number, packet: string, payload: string | Buffer | null]>('INSERT INTO inbox (id, packet, payload) VALUES (?, ?, ?)'),
      del: db.prepare<[id: number]>('DELETE FROM inbox WHERE id = ?'),
      all: db.prepare<[], InboxRow>(ALL_ROWS),
      max: db.prepare<[], { id: number | null }>('SELECT max(id) AS id FROM inbox'),
      upTo: db.prepare<[id: number], InboxRow>('SELECT id, packet, payload FROM inbox WHERE id <= ? ORDER BY id'),
    };
    this.#nextId = (this.#sql.max.get()!.id ?? 0) + 1;
  }

  /** Stores a publish (and its shared-subscription copies); calls `done` once committed. */
  accept(packet: StoredPacket, done: PublishDone, client?: Client | null): void {
    let turn = this.#turn;
    if (!turn) {
      const fresh: Turn = (turn = this.#turn = { dones: [], ahead: [], inbox: [], staged: [] });
      setImmediate(() => this.#commit(fresh));
    }
    // Only what Aedes stores itself needs the inbox: retained messages and copies for persistent
    // sessions. Online clean sessions end with a crash anyway; shared copies are in the group queues.
    if ((packet.qos ?? 0) > 0 && (packet.retain === true || this.persistence.hasSessionSubscriber(packet.topic ?? ''))) {
      const id = this.#nextId++;
      this.#inboxIds.set(packet, id);
      turn.inbox.push([id, JSON.stringify({ topic: packet.topic, qos: packet.qos, retain: packet.retain ?? false }), packet.payload ?? null]);
    }
    // QoS 0 waits for the commit too: its shared-subscription copies are handed out after it.
    const staged = this.shared.stage(packet);
    if (staged) for (const e of staged) turn.staged.push(e);
    if (client) done = this.#readAhead(turn, client, packet.payload?.length ?? 0, done);
    turn.dones.push(done);
  }

  /** Reads the publisher on ahead of this publish's PUBACK, within READ_AHEAD; returns the publish's `done`. */
  #readAhead(turn: Turn, client: Client, bytes: number, done: PublishDone): PublishDone {
    let load = this.#ahead.get(client);
    if (!load) this.#ahead.set(client, (load = { publishes: 0, bytes: 0 }));
    if (load.publishes >= READ_AHEAD.publishes || load.bytes + bytes > READ_AHEAD.bytes) return done;
    const counted = load;
    counted.publishes++;
    counted.bytes += bytes;
    const ahead: Ahead = { client };
    turn.ahead.push(ahead);
    return (err) => {
      counted.publishes--;
      counted.bytes -= bytes;
      ahead.recount?.();
      done(err);
    };
  }

  /** One transaction for the turn's publishes: their inbox rows and their group-queue entries. */
  #commit(turn: Turn): void {
    this.#turn = undefined;
    const writes: Promise<void>[] = [];
    if (turn.inbox.length > 0) writes.push(this.commits.write(() => turn.inbox.forEach((row) => this.#sql.put.run(...row))));
    if (turn.staged.length > 0) writes.push(this.shared.append(turn.staged));
    // Now, rather than in a turn of its own.
    this.commits.flush();
    const written = Promise.all(writes).then(
      () => null,
      (err: Error) => err,
    );
    // PUBACKs go out in the order the publishes came (MQTT-4.6.0-2), though with write-behind a
    // later turn may settle first (its members acknowledged before an earlier turn's were written).
    this.#settled = Promise.all([this.#settled, written])
      .then(([, err]) => turn.dones.forEach((done) => done(err)))
      .catch((err: unknown) => this.log.error({ err }, 'a publish acknowledgement failed'));
    // Last: reading on may parse the next publishes (they go to the next turn).
    for (const ahead of turn.ahead) if (!ahead.client.closed) ahead.recount = readAhead(ahead.client);
  }

  /** Hooks into the broker: clear inbox rows once routed. (A publish the ACL refuses never gets here: authorization.ts closes the connection first.) */
  attach(broker: Aedes): void {
    whenRouted(broker, (packet) => {
      const id = this.#inboxIds.get(packet);
      if (id !== undefined) this.commits.queue(() => this.#sql.del.run(id));
    });
  }

  /** Routes again what was acknowledged but maybe not routed before the last stop; at start, before clients connect. */
  async replay(broker: Aedes): Promise<number> {
    const rows = await this.#route(broker, this.#sql.all.all());
    if (rows > 0) this.log.info({ messages: rows }, 'routed messages acknowledged before the last stop');
    return rows;
  }

  /**
   * Several nodes: Aedes stores a publish for persistent sessions in Redis before fanning it out,
   * and when Redis is away that fails, or never ends, and the row stays here while the node runs
   * on. Every `everyMs`, the rows that were already here the time before (so at least that old) are
   * routed again: at least once, never lost (a publish routed that slowly arrives twice).
   */
  sweep(broker: Aedes, everyMs: number): () => void {
    let seen = 0;
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      const stale = seen > 0 ? this.#sql.upTo.all(seen) : [];
      seen = this.#nextId - 1;
      if (stale.length === 0) return;
      running = true;
      this.#route(broker, stale)
        .then((n) => this.log.warn({ messages: n }, 'routed again messages whose routing had not finished (Redis was away?)'))
        .catch((err: Error) => this.log.warn({ err: err.message }, 'routing again failed; next sweep tries again'))
        .finally(() => (running = false));
    }, everyMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  async #route(broker: Aedes, rows: InboxRow[]): Promise<number> {
    for (const r of rows) {
      await routeRow(broker, r);
      this.commits.queue(() => this.#sql.del.run(r.id));
    }
    return rows.length;
  }
}


/** Publishes an inbox row through the broker: Aedes routes it to every session as if it had just come in. */
function routeRow(broker: Aedes, r: InboxRow): Promise<void> {
  const { topic, qos, retain } = JSON.parse(r.packet) as { topic: string; qos: 0 | 1 | 2; retain: boolean };
  return new Promise<void>((resolve, reject) =>
    broker.publish({ cmd: 'publish', topic, qos, retain, dup: false, payload: r.payload ?? Buffer.alloc(0) }, (err) => (err ? reject(err) : resolve())),
  );
}

/**
 * Several nodes: routes the inbox of another node's file (a node that is gone: node-lease.ts says
 * when), deleting each row once routed. Returns how many rows there were.
 */
export async function routeInboxOf(broker: Aedes, db: DB): Promise<number> {
  const rows = db.prepare<[], InboxRow>(ALL_ROWS).all();
  const del = db.prepare<[id: number]>('DELETE FROM inbox WHERE id = ?');
  for (const r of rows) {
    await routeRow(broker, r);
    del.run(r.id);
  }
  return rows.length;
}
