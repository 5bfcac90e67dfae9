// The broker's one SQLite database: Aedes session state (subscriptions, queued outgoing messages,
// QoS 2 incoming, wills, retained), the ingest inbox and the shared-subscription queues. One file so
// that a single transaction can make a publish durable everywhere at once.
export const migrations = [
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
] as const;
