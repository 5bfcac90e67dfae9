// The embedded MQTT broker (Aedes): MQTT 3.1.1 over TCP and WebSocket, with health and metrics over
// HTTP. This file only wires: config → logins and ACL → SQLite (persistence, ingest,
// shared-subscription queues) → Aedes with our limits, access control and authorization →
// listeners → live figures → shutdown. With BROKER_STORE=redis, sessions, fan-out and the group
// queues are shared in Redis by every node (SQLite keeps only this node's ingest inbox).
import { Aedes } from 'aedes';
import { randomUUID } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
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
import { declaredShares } from '../lib/topics.js';
import { onShutdown } from '../lib/shutdown.js';
import { Acl } from './acl.js';
import {
  FAST_PATHS_OFF,
  Presence,
  closeEveryClient,
  connectHooks,
  connectedClients,
  countConnected,
  finishFanoutOnClose,
  handleTcp,
  handleWebSocket,
  ignoreInFanout,
  maxTopicLevels,
  subscriberCheck,
  takePackets,
  type UnsentBound,
} from './aedes-adapter.js';
import { Access } from './auth.js';
import { authorizationHooks, publishRefusal } from './authorization.js';
import { directPublish } from './direct-publish.js';
import { CommitQueue } from './commit-queue.js';
import { SharedSubscriptions, parseDeclaredGroups } from './group-queue.js';
import { Ingest, routeInboxOf } from './ingest.js';
import { ConnectionLimits } from './limits.js';
import { readLogins } from './logins.js';
import { dropReporter, endReporter, registerBrokerMetrics, registerSessionCount } from './metrics.js';
import { SqlitePersistence, type SessionPersistence, type StoredPacket } from './persistence.js';
import { SessionCap } from './session-cap.js';
import { onFanoutReturn } from './fanout-return.js';
import { migrations } from './schema.js';
import { SpaceReclaimer } from './reclaim.js';
import { HANDED_BACK, MemoryTrim } from './memory.js';
import { nativeHeapTrimmer } from './native-heap.js';
import { Checkpointer } from '../lib/checkpointer.js';
import { SqliteGroupStore } from './sqlite-group-store.js';
import { BrokerStats } from './stats.js';
import { publishOrphanedWills } from './wills.js';

const config = loadConfig({
  ...commonEnv,
  /** Interface of the MQTT and MQTT-over-WebSocket listeners; unset: HTTP_HOST's (0.0.0.0 in a container, where 127.0.0.1 would hide them from the gateway). */
  MQTT_HOST: z.string().min(1).optional(),
  MQTT_PORT: port(1883),
  MQTT_WS_PORT: port(8083),
  HTTP_PORT: port(3006),
  /** Mosquitto password_file (npm run broker:passwd writes one). */
  BROKER_PASSWORD_FILE: z.string().min(1).optional(),
  /** The same, inline: `user:$7$…` entries separated by commas or newlines. */
  BROKER_PASSWORDS: z.string().min(1).optional(),
  BROKER_ACL_FILE: z.string().min(1).default(fileURLToPath(new URL('./mosquitto/acl', import.meta.url))),
  BROKER_ALLOW_ANONYMOUS: bool(false),
  BROKER_INFLIGHT_WINDOW: z.coerce.number().int().min(1).max(1024).default(128),
  BROKER_REDISPATCH_GRACE_MS: z.coerce.number().int().min(0).max(600_000).default(2000),
  /** Entries (and bytes) of each group's queue kept in memory; the rest waits in SQLite. */
  BROKER_QUEUE_MEMORY_MESSAGES: z.coerce.number().int().min(1).max(1_000_000).default(2000),
  BROKER_QUEUE_MEMORY_BYTES: z.coerce.number().int().min(1024).default(8 * 1024 * 1024),
  /**
   * Write-behind (one node): a message for a group with a member online goes to it before being
   * written; it is written only if still unacknowledged after this long (the publisher's PUBACK
   * waits for the acknowledgement or the write). 0: write every message first.
   */
  BROKER_WRITE_BEHIND_MS: z.coerce.number().int().min(0).max(10_000).default(100),
  /**
   * Memory outside the JavaScript heap (Buffers) that may pile up before the broker asks for a full
   * collection (broker/memory.ts): lower keeps the resident memory closer to the live data, higher
   * spends less CPU on collections while messages stream through. 0: never asked for, V8 decides.
   */
  BROKER_MEMORY_TRIM_BYTES: z.coerce.number().int().min(0).default(16 * 1024 * 1024),
  /** Largest packet accepted from a client, CONNECT included; larger ones close the connection as soon as announced. */
  BROKER_MAX_PACKET_BYTES: z.coerce.number().int().min(1024).max(268_435_455).default(1024 * 1024),
  /**
   * Bytes written to a connection and not yet sent past which its client counts as not reading and
   * is disconnected (broker/aedes-adapter.ts boundUnsent). At least BROKER_MAX_PACKET_BYTES.
   */
  BROKER_MAX_UNSENT_BYTES: z.coerce.number().int().min(64 * 1024).default(8 * 1024 * 1024),
  /** How long a new connection has to send its whole CONNECT. */
  BROKER_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
  BROKER_MAX_CONNECTIONS_PER_ADDRESS: z.coerce.number().int().min(1).default(512),
  /** Connections per address that have not sent their CONNECT yet. */
  BROKER_MAX_CONNECTING_PER_ADDRESS: z.coerce.number().int().min(1).default(64),
  /**
   * Shared subscriptions kept from the first start, with or without members, comma-separated
   * `$share/<group>/<filter>` (README, "First start"); default: the system's consumers' (lib/topics.ts,
   * SHARED_GROUPS); `none`: only those members have created.
   */
  BROKER_GROUPS: z.string().default(declaredShares().join(',')),
  /** Where sessions and group queues live: this node's SQLite, or Redis shared by any number of nodes. */
  BROKER_STORE: z.enum(['sqlite', 'redis']).default('sqlite'),
  /** Several nodes: how long a SUBSCRIBE or UNSUBSCRIBE may wait for its broadcast through Redis before the connection is closed. */
  BROKER_REDIS_SUBSCRIBE_TIMEOUT_MS: z.coerce.number().int().min(1000).max(600_000).default(30_000),
  BROKER_REDIS_URL: z.string().regex(/^rediss?:\/\/.+/, 'must be a redis:// or rediss:// URL').optional(),
  /** This node's name among several (logs, the Aedes broker id). */
  BROKER_NODE_ID: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits and _.- only (1-64)')
    // The host name: a container's own, the same when it restarts (its inbox file is named after it).
    .default(hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 64)),
  /** How long a node's id stays held in Redis after its last renewal (every third of it): a node gone that long has its inbox adopted. */
  BROKER_NODE_LEASE_MS: z.coerce.number().int().min(300).max(600_000).default(10_000),
  /** Aedes's heartbeat between nodes: the wills of a node silent for four of them are published by the others. */
  BROKER_HEARTBEAT_MS: z.coerce.number().int().min(100).max(600_000).default(5000),
});
const mqttHost = config.MQTT_HOST ?? config.HTTP_HOST;
const log = createLogger('broker', config.LOG_LEVEL).child({ node: config.BROKER_NODE_ID });
const metrics = createMetrics('broker');

/** A configuration the broker cannot start with: say why and exit with EX_CONFIG, as loadConfig does. */
function orExit<T>(read: () => T, what = ''): T {
  try {
    return read();
  } catch (err) {
    console.error(`broker: ${what}${(err as Error).message}`);
    process.exit(78);
  }
}
const passwords = orExit(() =>
  readLogins({ file: config.BROKER_PASSWORD_FILE, inline: config.BROKER_PASSWORDS, env: process.env, allowAnonymous: config.BROKER_ALLOW_ANONYMOUS }),
);
if (config.BROKER_ALLOW_ANONYMOUS) log.warn('anonymous clients are allowed, with full access (development only)');
const acl = orExit(() => Acl.read(config.BROKER_ACL_FILE), `${config.BROKER_ACL_FILE}: `);
const declaredGroups = orExit(
  () => parseDeclaredGroups(config.BROKER_GROUPS, (group, filter) => config.BROKER_ALLOW_ANONYMOUS || acl.groupJoiners(group, filter).length > 0),
  'BROKER_GROUPS: ',
);
const redisUrl = orExit(() => {
  if (config.BROKER_STORE === 'redis' && !config.BROKER_REDIS_URL) throw new Error('BROKER_STORE=redis needs BROKER_REDIS_URL');
  return config.BROKER_STORE === 'redis' ? config.BROKER_REDIS_URL : undefined;
});

// The Redis parts (ioredis, mqemitter-redis, aedes-persistence-redis) are loaded only for a broker
// on Redis: a single node never needs them, and loading them costs it about 0.2 s of CPU at start
// and resident memory it keeps for its whole life (docs/benchmarks.md).
const cluster = redisUrl
  ? await Promise.all([import('./node-lease.js'), import('./redis-group-store.js'), import('./redis-persistence.js'), import('./cluster-bounds.js'), import('mqemitter-redis')]).then(
      ([lease, groupStore, persistence, bounds, mqemitter]) => ({ url: redisUrl, ...lease, ...groupStore, ...persistence, ...bounds, MQEmitterRedis: mqemitter.default }),
    )
  : undefined;

// Several nodes: this node's id is held in Redis while it runs, and names its own file, which
// other nodes adopt once it is gone for good (node-lease.ts): DATA_DIR may be one volume for all.
const nodeLease = cluster ? new cluster.NodeLease({ url: cluster.url, nodeId: config.BROKER_NODE_ID, ttlMs: config.BROKER_NODE_LEASE_MS, log }) : undefined;
await nodeLease?.claim(2 * config.BROKER_NODE_LEASE_MS).catch((err: Error) => {
  log.fatal(err.message);
  process.exit(78);
});
// Queues fill and drain: the file must be able to shrink again (broker/reclaim.ts).
const shrinkable = { walBytes: 64 * 1024 * 1024 };
// A queue is written at its tail and read at its head: a few MiB of page cache hold both paths,
// and a 16 MiB cache only adds to the resident memory while a backlog streams through
// (docs/benchmarks.md: about 10 MiB less at the peak of a million-message drain, the same pace).
const db = openDatabase(dataFile(config.DATA_DIR, cluster ? cluster.inboxName(config.BROKER_NODE_ID) : 'broker'), { migrations, shrinkable, cacheBytes: 4 * 1024 * 1024 });
const commits = new CommitQueue(db, (err) => {
  // Acknowledged messages can no longer be kept: stop rather than lie to publishers.
  log.fatal({ err }, 'SQLite commit failed');
  process.exit(1);
});
const redisStore = cluster ? new cluster.RedisGroupStore({ url: cluster.url }) : undefined;
redisStore?.onError((err) => log.warn({ err: err.message }, 'redis connection (group queues)'));
await redisStore?.ready();
const redisPersistence = cluster
  ? new cluster.RedisPersistence(
      cluster.url,
      (err) => log.warn({ err: err.message }, 'redis connection (sessions)'),
      {
        // Its SUBACK waits as long: a node whose fan-out lost its $SYS/sub/+ subscription never answers.
        onSlow: (clientId, waitedMs) => log.error({ clientId, waitedMs }, 'a change of subscriptions still waits for its broadcast through Redis'),
        onTimeout: (clientId, waitedMs) =>
          log.error({ clientId, waitedMs }, 'a change of subscriptions gave up waiting for its broadcast through Redis; connection closed (the client subscribes again when it reconnects)'),
        timeoutMs: config.BROKER_REDIS_SUBSCRIBE_TIMEOUT_MS,
      },
    )
  : undefined;
const persistence: SessionPersistence = redisPersistence ?? new SqlitePersistence(db, commits);
const shared = new SharedSubscriptions({
  store: redisStore ?? new SqliteGroupStore(db, commits),
  persistence,
  log,
  window: config.BROKER_INFLIGHT_WINDOW,
  graceMs: config.BROKER_REDISPATCH_GRACE_MS,
  memory: { messages: config.BROKER_QUEUE_MEMORY_MESSAGES, bytes: config.BROKER_QUEUE_MEMORY_BYTES },
  writeBehindMs: config.BROKER_WRITE_BEHIND_MS,
  declared: declaredGroups,
});
const reclaimer = new SpaceReclaimer({ db, log, beforeReclaim: () => commits.flush(), busy: () => shared.draining });
const nativeHeap = nativeHeapTrimmer();
if ('unavailable' in nativeHeap) log.info({ reason: nativeHeap.unavailable }, 'no malloc_trim in this C library: memory freed after a burst may stay resident');
const mib = (bytes: number) => Math.round(bytes / 104857.6) / 10;
const memoryTrim =
  config.BROKER_MEMORY_TRIM_BYTES > 0
    ? new MemoryTrim({
        budgetBytes: config.BROKER_MEMORY_TRIM_BYTES,
        // A burst is over: SQLite's page cache and the C library's free pages go back to the system.
        settled: () => {
          const before = process.memoryUsage.rss();
          if (db.open) db.pragma('shrink_memory');
          const released = 'trim' in nativeHeap && nativeHeap.trim();
          log.info({ rssMiB: { before: mib(before), after: mib(process.memoryUsage.rss()) }, released }, HANDED_BACK);
        },
      })
    : undefined;
const checkpointer = new Checkpointer(db, log);
// Members' PUBACKs reach the group queue before Aedes (takePackets, below); any that
// did not are claimed from Aedes's own handling.
persistence.claimAck = (clientId, messageId) => shared.acknowledge(clientId, messageId);
const ingest = new Ingest(db, commits, shared, persistence, log);
const access = new Access({ passwords, acl, allowAnonymous: config.BROKER_ALLOW_ANONYMOUS, log });
persistence.mayQueue = access.mayQueue;
const limits = new ConnectionLimits({
  maxPacketBytes: config.BROKER_MAX_PACKET_BYTES,
  connectTimeoutMs: config.BROKER_CONNECT_TIMEOUT_MS,
  maxConnectionsPerAddress: config.BROKER_MAX_CONNECTIONS_PER_ADDRESS,
  maxConnectingPerAddress: config.BROKER_MAX_CONNECTING_PER_ADDRESS,
  log,
  onRefused: (kind) => brokerMetrics.refused.inc({ what: kind }),
});

// Several nodes: publishes fan out through Redis to every node's subscribers. ioredis reconnects
// by itself; meanwhile publishes fail (no PUBACK) and the errors are logged, not thrown.
// (mqemitter-redis reports them on `state`, untyped; an 'error' nobody listens to there would throw.)
const mq = cluster ? (cluster.MQEmitterRedis({ connectionString: cluster.url }) as ReturnType<typeof cluster.MQEmitterRedis> & { state: EventEmitter }) : undefined;
mq?.state.on('error', (err: Error) => log.warn({ err: err.message }, 'redis connection (fan-out)'));
if (mq && redisStore) ignoreInFanout(mq, redisStore.noticeChannel);
// Its close (at the end of Aedes's) lets the publishes on their way to Redis finish first.
if (mq) finishFanoutOnClose(mq, (err, connection) => log.warn({ err: err.message, connection }, 'redis connection (fan-out) closed before its QUIT was answered'));

// What every publish is checked against, through Aedes (authorizationHooks) or past it (directPublish).
const publishChecks = { limits, access, log, onRefused: (what: 'subscribe' | 'publish') => brokerMetrics.refused.inc({ what }) };

// Several nodes: the ACL's queue and session bounds ask Redis who is connected anywhere (cluster-bounds.ts).
const clusterBounds = cluster
  ? new cluster.ClusterBounds({
      url: cluster.url,
      nodeId: config.BROKER_NODE_ID,
      sessionLimitOf: access.sessionLimit,
      isHere: (clientId): boolean => presence.has(clientId),
      onError: (err) => log.warn({ err: err.message }, 'redis connection (bounds)'),
    })
  : undefined;
await clusterBounds?.start();
// Who has a connection here (connected or connecting), for the ACL's bounds: a session is away once its last connection closed.
const presence = new Presence((clientId) => sessionCap?.away(clientId), clusterBounds);
// The ACL's session bounds: room for a persistent client's session is made when it first
// subscribes, by ending the session away the longest (on several nodes, in Redis: clusterBounds).
const sessionCap =
  persistence instanceof SqlitePersistence
    ? new SessionCap({
        limitOf: access.sessionLimit,
        holds: (clientId) => persistence.holdsSession(clientId),
        isConnected: (clientId) => presence.has(clientId),
        end: (clientId) => persistence.endSession(clientId),
        onEnded: (...args) => reportEnded(...args),
        onOrdered: (clientId) => persistence.markAway(clientId, Date.now()),
        onForgotten: (clientId) => persistence.forgetAway(clientId),
      })
    : undefined;

const admitSession = sessionCap
  ? (clientId: string) => sessionCap.admit(clientId)
  : clusterBounds &&
    redisPersistence &&
    ((clientId: string) => clusterBounds.admit(clientId, (ended, user, limit) => redisPersistence.endSession(ended).then(() => reportEnded(user, ended, limit))));
const { unsubscribed, ...authorizeHooks } = authorizationHooks({ ...publishChecks, shared, ingest, persistence, admitSession });

const broker = await Aedes.createBroker({
  // A new id per start: Aedes de-duplicates deliveries by (broker id, counter), and the counter restarts.
  id: `woodytoys-broker-${cluster ? `${config.BROKER_NODE_ID}-` : ''}${randomUUID().slice(0, 8)}`,
  persistence,
  ...(mq ? { mq, heartbeatInterval: config.BROKER_HEARTBEAT_MS } : {}),
  ...connectHooks({ limits, access, presence }),
  ...authorizeHooks,
});
// A clean start has dropped the client's stored session once Aedes registers it: no longer counted.
if (clusterBounds) broker.on('client', (client) => client.clean && clusterBounds.cleanStart(client.id));
broker.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'client error'));
broker.on('connectionError', () => brokerMetrics.refused.inc({ what: 'connect' }));
const connected = countConnected(broker);
const brokerMetrics = registerBrokerMetrics(metrics, { broker, connected, shared, persistence, commits, reclaimer });
const reportEnded = endReporter(log, brokerMetrics.sessionsEnded);
// The ACL's queue bounds: what a session keeps, its client away or connected (a connected client
// gets each message live, kept or not). And the session bounds count the sessions Aedes had the
// store load while it was created (persistence.setup).
const boundedQueues = persistence instanceof SqlitePersistence ? persistence : redisPersistence!;
boundedQueues.queueLimit = access.queueLimit;
boundedQueues.onQueueFull = dropReporter(log, brokerMetrics.sessionDropped);
if (persistence instanceof SqlitePersistence) sessionCap?.seed(persistence.sessionClientIds());
if (sessionCap) registerSessionCount(metrics, () => sessionCap.counts());
if (clusterBounds && redisPersistence) {
  await clusterBounds.seed(await redisPersistence.sessionClientIds());
  const capped = [...acl.users.keys()].filter((user) => acl.sessionLimit(user) !== undefined);
  if (capped.length > 0) registerSessionCount(metrics, () => clusterBounds.counts(capped));
}
shared.start(broker);
// Members' PUBACKs, and (one node) publishes only shared subscriptions want, skip Aedes's pipeline.
let fastPathsOffTold = false;
takePackets(broker, {
  puback: (client, messageId) => shared.acknowledge(client.id, messageId),
  // An UNSUBSCRIBE gives its filters back as it is parsed, in order with the SUBSCRIBEs around it:
  // Aedes's 'unsubscribe' event comes turns later, after a SUBSCRIBE sent in the same write.
  unsubscribe: unsubscribed,
  condemned: (client) => limits.violation(client.conn) !== undefined,
  notTaken: (client, listeners) => {
    if (fastPathsOffTold) return;
    fastPathsOffTold = true;
    log.error({ clientId: client.id, listeners }, FAST_PATHS_OFF);
  },
  publish: mq
    ? undefined
    : directPublish({
        maxTopicLevels: maxTopicLevels(broker),
        hasSubscriber: subscriberCheck(broker),
        hasSessionSubscriber: (topic) => persistence.hasSessionSubscriber(topic),
        refusal: publishRefusal(publishChecks),
        accept: (packet, done, client) => ingest.accept(packet as StoredPacket, done, client),
        published: (packet, client) => broker.emit('publish', packet as never, client),
      }),
});
reclaimer.start();
memoryTrim?.start();
checkpointer.start();
ingest.attach(broker);
await ingest.replay(broker);
nodeLease?.keep(() => {
  // Its file may be adopted now: acknowledging more into it would be acknowledging into nothing.
  log.fatal('another process took this node id (after an outage of Redis longer than its lease): stopping');
  process.exit(1);
});
nodeLease?.adoptEvery(config.DATA_DIR, async (file, nodeId) => {
  await clusterBounds?.forgetNode(nodeId);
  const orphan = openDatabase(file, { migrations, shrinkable });
  try {
    return await routeInboxOf(broker, orphan);
  } finally {
    orphan.close();
  }
});
// Several nodes: while Redis was away, publishes stored for persistent sessions stayed in Redis, but
// their live fan-out (Redis pub/sub, which keeps nothing) may be lost, and a client that stayed
// connected would not see them until it reconnects. So once the fan-out works again (a probe made
// the round trip: fanout-return.ts), this node closes its clients' connections: each resumes its
// session, and Aedes sends it what is queued for it.
const stopSweep = mq ? ingest.sweep(broker, 5000) : undefined;
// And whatever else leaves a message queued for a connected session without reaching it live.
const stopQueueWatch =
  cluster && persistence instanceof cluster.RedisPersistence
    ? persistence.watchQueues(() => connectedClients(broker), 5000, (client) => {
        log.warn({ clientId: client.id }, 'a message queued for this connected session did not reach it: it reconnects to resume');
        client.close();
      })
    : undefined;
const stopFanoutWatch = mq
  ? onFanoutReturn(mq, broker.id, () => {
      const closed = closeEveryClient(broker);
      log.warn({ clients: closed }, 'redis is back: clients reconnect to resume their sessions');
    })
  : undefined;
// Several nodes: the wills of a node that died are published by the others (Aedes's heartbeats).
if (persistence instanceof SqlitePersistence) await publishOrphanedWills(broker, persistence, log);

// Several nodes: the declared groups are in Redis before the first client connects.
await shared.declare();

const listen = (server: NetServer | ReturnType<typeof createHttpServer>, p: number) =>
  new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(p, mqttHost, () => resolve((server.address() as { port: number }).port));
  });

// A stranger that stops reading is disconnected rather than left to hold up everyone's deliveries.
if (config.BROKER_MAX_UNSENT_BYTES < config.BROKER_MAX_PACKET_BYTES) {
  log.warn({ BROKER_MAX_UNSENT_BYTES: config.BROKER_MAX_UNSENT_BYTES, BROKER_MAX_PACKET_BYTES: config.BROKER_MAX_PACKET_BYTES }, 'BROKER_MAX_UNSENT_BYTES is below the packet bound: the packet bound is used');
}
const unsent: UnsentBound = {
  maxBytes: Math.max(config.BROKER_MAX_UNSENT_BYTES, config.BROKER_MAX_PACKET_BYTES),
  detached: (client) => access.bounded(client),
  onPassed: (client, bytes) => {
    brokerMetrics.refused.inc({ what: 'unsent' });
    log.warn({ clientId: client.id, unsentBytes: bytes, maxBytes: unsent.maxBytes }, 'client not reading its connection: disconnected');
  },
};
// No Nagle: acknowledgements and small PUBLISH packets go out at once (flow control waits on
// them), but what one tick writes leaves together.
const tcp = createServer({ noDelay: true }, (socket) => {
  if (!limits.accept(socket)) return;
  handleTcp(broker, socket, unsent);
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
  handleWebSocket(broker, stream, req, unsent);
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
    mqtt: `mqtt://${mqttHost}:${mqttPort}`,
    ws: `ws://${mqttHost}:${wsPort}`,
    http: http.port,
    window: config.BROKER_INFLIGHT_WINDOW,
    graceMs: config.BROKER_REDISPATCH_GRACE_MS,
    store: config.BROKER_STORE,
  },
  'broker listening',
);

// Group backlogs for displays and the dashboard: woodytoys/public/stats/broker, retained, once a second.
const stats = new BrokerStats(broker, shared, connected);
stats.start();

onShutdown(log, async () => {
  stats.stop();
  stopSweep?.();
  stopFanoutWatch?.();
  stopQueueWatch?.();
  reclaimer.stop();
  memoryTrim?.stop();
  tcp.close();
  wss.close();
  wsHttp.close();
  await new Promise<void>((resolve) => broker.close(() => resolve()));
  shared.stop();
  await redisStore?.close();
  await clusterBounds?.close();
  await nodeLease?.close();
  commits.close();
  await checkpointer.stop();
  db.close();
  await http.close();
});
