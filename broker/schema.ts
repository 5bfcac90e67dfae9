// The broker's one SQLite database: Aedes session state (subscriptions, queued outgoing messages,
// QoS 2 incoming, wills, retained), the ingest inbox and the shared-subscription queues. One file so
// that a single transaction can make a publish durable everywhere at once. Never edit a shipped
// migration; add one.
import type { DB, Migration } from '../lib/db.js';
import { encodePublish } from './publish-packet.js';
export const migrations: readonly Migration[] = [
  `
  CREATE TABLE retained (topic TEXT PRIMARY KEY, packet TEXT NOT NULL, payload BLOB) WITHOUT ROWID;
  CREATE TABLE subscriptions (
    client_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    options TEXT NOT NULL,
    PRIMARY KEY (client_id, topic)
  ) WITHOUT ROWID;
  -- Messages queued for a persistent session, in delivery order (id).
  CREATE TABLE outgoing (id INTEGER PRIMARY KEY, client_id TEXT NOT NULL, packet TEXT NOT NULL, payload BLOB);
  CREATE INDEX outgoing_by_client ON outgoing (client_id, id);
  -- QoS 2 publishes received but not yet released.
  CREATE TABLE incoming (
    client_id TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    packet TEXT NOT NULL,
    payload BLOB,
    PRIMARY KEY (client_id, message_id)
  ) WITHOUT ROWID;
  CREATE TABLE wills (client_id TEXT PRIMARY KEY, packet TEXT NOT NULL, payload BLOB) WITHOUT ROWID;
  -- Publishes acknowledged to their publisher but not yet routed to every persistent session;
  -- replayed at start after a crash.
  CREATE TABLE inbox (id INTEGER PRIMARY KEY, packet TEXT NOT NULL, payload BLOB);
  -- One row per message per shared subscription ($share/group/filter) until a member acknowledges it.
  CREATE TABLE shared_messages (id INTEGER PRIMARY KEY, share TEXT NOT NULL, packet TEXT NOT NULL, payload BLOB);
  CREATE INDEX shared_messages_by_share ON shared_messages (share, id);
  `,
  // Group queues read a window at a time (sqlite-group-store.ts): one B-tree clustered by group and
  // id, each entry the PUBLISH packet members receive, and a count per group kept with every change
  // so that start-up never counts (or loads) the entries themselves. Queued messages move over.
  (db: DB) => {
    db.exec(`
      CREATE TABLE groups (id INTEGER PRIMARY KEY, share TEXT NOT NULL UNIQUE, stored INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE group_messages (
        group_id INTEGER NOT NULL,
        id INTEGER NOT NULL,
        packet BLOB NOT NULL,
        PRIMARY KEY (group_id, id)
      ) WITHOUT ROWID;
      INSERT INTO groups (share) SELECT DISTINCT share FROM shared_messages;
    `);
    const insert = db.prepare('INSERT INTO group_messages (group_id, id, packet) SELECT id, ?, ? FROM groups WHERE share = ?');
    const page = db.prepare<[after: number], { id: number; share: string; packet: string; payload: Buffer | null }>('SELECT id, share, packet, payload FROM shared_messages WHERE id > ? ORDER BY id LIMIT 1000');
    for (let after = 0; ; ) {
      const rows = page.all(after);
      if (rows.length === 0) break;
      for (const r of rows) {
        const { topic, qos } = JSON.parse(r.packet) as { topic: string; qos: number };
        insert.run(r.id, encodePublish(topic, r.payload ?? Buffer.alloc(0), qos ? 1 : 0), r.share);
      }
      after = rows.at(-1)!.id;
    }
    db.exec(`
      UPDATE groups SET stored = (SELECT count(*) FROM group_messages WHERE group_id = groups.id);
      DROP TABLE shared_messages;
    `);
  },
  // When each counted session of a user with a "#@ sessions" bound went away (or was counted):
  // after a restart, the one away the longest is still the first ended (session-cap.ts).
  `
  CREATE TABLE session_away (client_id TEXT PRIMARY KEY, since INTEGER NOT NULL) WITHOUT ROWID;
  `,
];
