// The embedded MQTT broker (Aedes): MQTT 3.1.1 over TCP and WebSocket, with health and metrics over
// HTTP. This file only wires: config → SQLite (persistence, ingest, shared-subscription queues) →
// Aedes with our limits and access control → listeners → shutdown.
import { Aedes } from 'aedes';
import { randomUUID } from 'node:crypto';
import { createServer, type Server as NetServer } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { z } from 'zod';
import { bool, commonEnv, loadConfig, port } from '../lib/config.js';
import { dataFile, openDatabase } from '../lib/db.js';
import { createLogger } from '../lib/log.js';
import { createMetrics } from '../lib/metrics.js';
import { createApp, serveApp } from '../lib/http.js';
import { onShutdown } from '../lib/shutdown.js';
import { statsTopic } from '../lib/stats.js';
import { coalesceWrites } from '../lib/wire.js';
import { Acl } from './acl.js';
import { connectHooks, takeAcknowledgements } from './aedes-adapter.js';
import { Access } from './auth.js';
import { CommitQueue } from './commit-queue.js';
import { SHARE_PREFIX, SharedSubscriptions, parseShare } from './group-queue.js';
import { Ingest } from './ingest.js';
import { ConnectionLimits } from './limits.js';
import { registerBrokerMetrics } from './metrics.js';
import { parsePasswordFile, passwordsFromEnv, readPasswordFile } from './password-hash.js';
import { SqlitePersistence, type StoredPacket } from './persistence.js';
import { migrations } from './schema.js';
import { SpaceReclaimer } from './reclaim.js';
import { MemoryTrim } from './memory.js';
import { Checkpointer } from '../lib/checkpointer.js';
import { SqliteGroupStore } from './sqlite-group-store.js';
import { publishOrphanedWills } from './wills.js';

const config = loadConfig({
  ...commonEnv,
  MQTT_HOST: commonEnv.HTTP_HOST,
  MQTT_PORT: port(1883),
  MQTT_WS_PORT: port(8083),
  HTTP_PORT: port(3006),
  /** Mosquitto password_file (npm run broker:passwd writes one). */
  BROKER_PASSWORD_FILE: z.string().min(1).optional(),
  /** The same, inline: `user:$7$…` entries separated by commas or newlines. */
  BROKER_PASSWORDS: z.string().min(1).optional(),
  BROKER_ACL_FILE: z.string().min(1).default(fileURLToPath(new URL('./mosquitto/acl', import.meta.url))),
  BROKER_ALLOW_ANONYMOUS: bool(false),
  BROKER_INFLIGHT_WINDOW: z.coerce.number().int().min(1).max(1024).default(32),
  BROKER_REDISPATCH_GRACE_MS: z.coerce.number().int().min(0).max(600_000).default(2000),
  /** Entries (and bytes) of each group's queue kept in memory; the rest waits in SQLite. */
  BROKER_QUEUE_MEMORY_MESSAGES: z.coerce.number().int().min(1).max(1_000_000).default(2000),
  BROKER_QUEUE_MEMORY_BYTES: z.coerce.number().int().min(1024).default(8 * 1024 * 1024),
  /** Largest packet accepted from a client, CONNECT included; larger ones close the connection as soon as announced. */
  BROKER_MAX_PACKET_BYTES: z.coerce.number().int().min(1024).max(268_435_455).default(1024 * 1024),
  /** How long a new connection has to send its whole CONNECT. */
  BROKER_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
  BROKER_MAX_CONNECTIONS_PER_ADDRESS: z.coerce.number().int().min(1).default(512),
  /** Connections per address that have not sent their CONNECT yet. */
  BROKER_MAX_CONNECTING_PER_ADDRESS: z.coerce.number().int().min(1).default(64),
});
const log = createLogger('broker', config.LOG_LEVEL);
const metrics = createMetrics('broker');

const fromEnv = (() => {
  try {
    return passwordsFromEnv(process.env);
  } catch (err) {
    console.error(`broker: ${(err as Error).message}`);
    process.exit(78);
  }
})();
const passwords = new Map([
  ...(config.BROKER_PASSWORD_FILE ? readPasswordFile(config.BROKER_PASSWORD_FILE) : []),
  ...(config.BROKER_PASSWORDS ? parsePasswordFile(config.BROKER_PASSWORDS.replaceAll(',', '\n')) : []),
  ...fromEnv,
]);
if (passwords.size === 0 && !config.BROKER_ALLOW_ANONYMOUS) {
  console.error(
    'broker: no users: set BROKER_PASSWORD_<USER> variables, BROKER_PASSWORD_FILE (npm run broker:passwd writes one) or BROKER_PASSWORDS, or BROKER_ALLOW_ANONYMOUS=true for development',
  );
  process.exit(78);
}
if (config.BROKER_ALLOW_ANONYMOUS) log.warn('anonymous clients are allowed, with full access (development only)');

// Queues fill and drain: the file must be able to shrink again (broker/reclaim.ts).
const db = openDatabase(dataFile(config.DATA_DIR, 'broker'), { migrations, shrinkable: { walBytes: 64 * 1024 * 1024 } });
const commits = new CommitQueue(db, (err) => {
  // Acknowledged messages can no longer be kept: stop rather than lie to publishers.
  log.fatal({ err }, 'SQLite commit failed');
  process.exit(1);
});
const persistence = new SqlitePersistence(db, commits);
const shared = new SharedSubscriptions({
  store: new SqliteGroupStore(db, commits),
  persistence,
  log,
  window: config.BROKER_INFLIGHT_WINDOW,
  graceMs: config.BROKER_REDISPATCH_GRACE_MS,
  memory: { messages: config.BROKER_QUEUE_MEMORY_MESSAGES, bytes: config.BROKER_QUEUE_MEMORY_BYTES },
});
const reclaimer = new SpaceReclaimer({ db, log, beforeReclaim: () => commits.flush(), busy: () => shared.draining });
const memoryTrim = new MemoryTrim();
const checkpointer = new Checkpointer(db, log);
// Members' PUBACKs reach the group queue before Aedes (takeAcknowledgements, below); any that
// did not are claimed from Aedes's own handling.
persistence.claimAck = (clientId, messageId) => shared.acknowledge(clientId, messageId);
const ingest = new Ingest(db, commits, shared, persistence, log);
const acl = (() => {
  try {
    return Acl.read(config.BROKER_ACL_FILE);
  } catch (err) {
    console.error(`broker: ${config.BROKER_ACL_FILE}: ${(err as Error).message}`);
    process.exit(78);
  }
})();
const access = new Access({ passwords, acl, allowAnonymous: config.BROKER_ALLOW_ANONYMOUS, log });
const limits = new ConnectionLimits({
  maxPacketBytes: config.BROKER_MAX_PACKET_BYTES,
  connectTimeoutMs: config.BROKER_CONNECT_TIMEOUT_MS,
  maxConnectionsPerAddress: config.BROKER_MAX_CONNECTIONS_PER_ADDRESS,
  maxConnectingPerAddress: config.BROKER_MAX_CONNECTING_PER_ADDRESS,
  log,
  onRefused: (kind) => brokerMetrics.refused.inc({ what: kind }),
});

const broker = await Aedes.createBroker({
  // A new id per start: Aedes de-duplicates deliveries by (broker id, counter), and the counter restarts.
  id: `woodytoys-broker-${randomUUID().slice(0, 8)}`,
  persistence,
  ...connectHooks({ limits, access }),
  authorizeForward: access.forward,
  authorizeSubscribe(client, sub, done) {
    // A topic filter the protocol rules refused (limits.ts): the connection is already closing.
    const violation = limits.violation(client.conn);
    if (violation) return done(new Error(violation.reason), null);
    const isShared = sub.topic.startsWith(SHARE_PREFIX);
    const parsed = isShared ? parseShare(sub.topic) : undefined;
    const filter = typeof parsed === 'object' ? parsed.filter : sub.topic;
    const reason =
      (isShared ? shared.refusal(client, sub.topic) : undefined) ?? access.subscribeRefusal(client, filter, typeof parsed === 'object' ? parsed.group : undefined);
    if (reason) {
      log.warn({ clientId: client.id, filter: sub.topic, reason }, 'subscription refused');
      brokerMetrics.refused.inc({ what: 'subscribe' });
      return done(null, null);
    }
    // Shared subscriptions are delivered with QoS 1 at most.
    done(null, isShared && sub.qos > 1 ? { ...sub, qos: 1 } : sub);
  },
  authorizePublish(client, packet, done) {
    const violation = client && limits.violation(client.conn);
    if (violation) return done(new Error(violation.reason));
    const reason = access.publishRefusal(client, packet.topic);
    if (reason) {
      // An error here makes Aedes close the connection before any PUBACK: MQTT 3.1.1 has no way to
      // say "refused" in a PUBACK, and a PUBACK would make the publisher believe it was delivered.
      log.warn({ clientId: client?.id, topic: packet.topic, reason }, 'publish refused; closing the connection');
      brokerMetrics.refused.inc({ what: 'publish' });
      return done(new Error(`publish to ${packet.topic} refused: ${reason}`));
    }
    ingest.accept(packet as StoredPacket, done);
  },
});
broker.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'client error'));
broker.on('connectionError', () => brokerMetrics.refused.inc({ what: 'connect' }));
const brokerMetrics = registerBrokerMetrics(metrics, { broker, shared, persistence, commits, reclaimer });
shared.start(broker);
takeAcknowledgements(broker, (client, messageId) => shared.acknowledge(client.id, messageId));
reclaimer.start();
memoryTrim.start();
checkpointer.start();
ingest.attach(broker);
await ingest.replay(broker);
await publishOrphanedWills(broker, persistence, log);

const listen = (server: NetServer | ReturnType<typeof createHttpServer>, p: number) =>
  new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(p, config.MQTT_HOST, () => resolve((server.address() as { port: number }).port));
  });

// No Nagle: acknowledgements and small PUBLISH packets go out at once (flow control waits on
// them), but what one tick writes leaves together.
const tcp = createServer({ noDelay: true }, (socket) => {
  if (!limits.accept(socket)) return;
  coalesceWrites(socket);
  broker.handle(socket);
  limits.watch(socket, socket);
});
const mqttPort = await listen(tcp, config.MQTT_PORT);
const wsHttp = createHttpServer((_req, res) => res.writeHead(426).end('use a WebSocket MQTT client\n'));
// Behind the gateway every WebSocket comes from nginx's address; nginx limits them per client.
wsHttp.on('connection', (socket) => limits.accept(socket));
// A WebSocket message holds one MQTT packet or a few: a larger one is refused before it is buffered.
const wss = new WebSocketServer({ server: wsHttp, maxPayload: config.BROKER_MAX_PACKET_BYTES + 64 * 1024 });
wss.on('connection', (ws, req) => {
  const stream = createWebSocketStream(ws);
  broker.handle(stream as never, req as never);
  limits.watch(stream, req.socket);
});
const wsPort = await listen(wsHttp, config.MQTT_WS_PORT);

const app = createApp({ log, metrics, ready: () => ({ listening: tcp.listening && wsHttp.listening, database: db.open }) });
// Each group's backlog, for the workers' lease demand (workers/backlog.ts polls it a few times a
// second): far cheaper than rendering every metric.
app.get('/groups', (c) => c.json(shared.stats.map(({ share, depth, inflight }) => ({ share, depth, inflight }))));
const http = await serveApp(app, config.HTTP_PORT, config.HTTP_HOST);
log.info(
  {
    mqtt: `mqtt://${config.MQTT_HOST}:${mqttPort}`,
    ws: `ws://${config.MQTT_HOST}:${wsPort}`,
    http: http.port,
    window: config.BROKER_INFLIGHT_WINDOW,
    graceMs: config.BROKER_REDISPATCH_GRACE_MS,
  },
  'broker listening',
);

// Group backlogs for displays and the dashboard: woodytoys/public/stats/broker, retained, once a second.
const statsTimer = setInterval(() => {
  const groups = shared.stats.map((q) => {
    const parsed = parseShare(q.share);
    return typeof parsed === 'string'
      ? { group: q.share, depth: q.depth, inFlight: q.inflight }
      : { group: parsed.group, filter: parsed.filter, depth: q.depth, inFlight: q.inflight, members: q.members, online: q.online };
  });
  const payload = JSON.stringify({ name: 'broker', at: new Date().toISOString(), clients: broker.connectedClients, groups });
  broker.publish({ cmd: 'publish', topic: statsTopic('broker'), payload: Buffer.from(payload), qos: 0, retain: true, dup: false }, () => {});
}, 1000);
statsTimer.unref();

onShutdown(log, async () => {
  clearInterval(statsTimer);
  reclaimer.stop();
  memoryTrim.stop();
  tcp.close();
  wss.close();
  wsHttp.close();
  await new Promise<void>((resolve) => broker.close(() => resolve()));
  shared.stop();
  commits.close();
  await checkpointer.stop();
  db.close();
  await http.close();
});
