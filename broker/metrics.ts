// The broker's Prometheus metrics, read when scraped: clients, messages in and out, queued
// messages of persistent sessions, per shared subscription its depth (and how much of it is in
// memory), in-flight messages, online members and re-dispatches, and the database's size.
import type { Aedes } from 'aedes';
import { Counter, Gauge } from 'prom-client';
import type { Logger } from '../lib/log.js';
import type { Metrics } from '../lib/metrics.js';
import type { CommitQueue } from './commit-queue.js';
import type { SharedSubscriptions } from './group-queue.js';
import type { SessionPersistence } from './persistence.js';
import type { SpaceReclaimer } from './reclaim.js';

export interface BrokerMetricsSources {
  broker: Aedes;
  /** Clients connected now (countConnected, aedes-adapter.ts). */
  connected: () => number;
  shared: SharedSubscriptions;
  persistence: SessionPersistence;
  commits: CommitQueue;
  reclaimer: SpaceReclaimer;
}

export function registerBrokerMetrics({ registry }: Metrics, { broker, connected, shared, persistence, commits, reclaimer }: BrokerMetricsSources) {
  const registers = [registry];
  new Gauge({
    name: 'mqtt_connected_clients',
    help: 'Connected MQTT clients',
    registers,
    collect() {
      this.set(connected());
    },
  });
  const messagesIn = new Counter({ name: 'mqtt_messages_in_total', help: 'PUBLISH packets accepted from clients', labelNames: ['qos'] as const, registers });
  const messagesOut = new Counter({ name: 'mqtt_messages_acknowledged_total', help: 'QoS 1 deliveries acknowledged by subscribers (PUBACK)', registers });
  const refused = new Counter({ name: 'mqtt_refused_total', help: 'Connections, publishes and subscriptions refused, and connections closed for not reading (what="unsent")', labelNames: ['what'] as const, registers });
  const inByQos = [messagesIn.labels('0'), messagesIn.labels('1'), messagesIn.labels('2')];
  broker.on('publish', (packet, client) => {
    if (client) inByQos[packet.qos]?.inc();
  });
  broker.on('ack', () => messagesOut.inc());
  new Gauge({
    name: 'mqtt_session_queued_messages',
    help: 'Messages queued for persistent sessions (normal subscriptions), sent or not',
    registers,
    collect() {
      if (persistence.outgoingDepth !== undefined) this.set(persistence.outgoingDepth);
    },
  });
  const perShare = (name: string, help: string, pick: (s: SharedSubscriptions['stats'][number]) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['share'] as const,
      registers,
      collect() {
        this.reset();
        for (const s of shared.stats) this.set({ share: s.share }, pick(s));
      },
    });
  perShare('mqtt_shared_queue_depth', 'Messages of a shared subscription waiting for a member', (s) => s.depth);
  perShare('mqtt_shared_queue_in_memory', 'Messages of a shared subscription waiting in memory (the rest wait on disk)', (s) => s.inMemory);
  perShare('mqtt_shared_queue_in_memory_bytes', 'Bytes of a shared subscription’s queue held in memory', (s) => s.inMemoryBytes);
  perShare('mqtt_shared_inflight', 'Messages of a shared subscription sent and not yet acknowledged', (s) => s.inflight);
  perShare('mqtt_shared_members', 'Members of a shared subscription', (s) => s.members);
  perShare('mqtt_shared_members_online', 'Members of a shared subscription now connected', (s) => s.online);
  perShare('mqtt_shared_delivered_total', 'PUBLISH packets sent to members of a shared subscription, resends included (monotonic while the broker runs)', (s) => s.delivered);
  perShare('mqtt_shared_written_total', 'Messages of a shared subscription written to disk (monotonic while the broker runs)', (s) => s.written);
  perShare(
    'mqtt_shared_never_written_total',
    'Messages of a shared subscription a member acknowledged before they had to be written to disk (write-behind; monotonic while the broker runs)',
    (s) => s.neverWritten,
  );
  perShare('mqtt_shared_redispatched_total', 'Messages handed to another member after theirs left (monotonic while the broker runs)', (s) => s.redispatched);
  new Gauge({
    name: 'broker_commits_total',
    help: 'SQLite group-commit transactions (monotonic)',
    registers,
    collect() {
      this.set(commits.stats.commits);
    },
  });
  new Gauge({
    name: 'broker_commit_writes_total',
    help: 'Writes made durable by group commits (monotonic)',
    registers,
    collect() {
      this.set(commits.stats.writes);
    },
  });
  new Gauge({
    name: 'broker_database_bytes',
    help: 'Size of the broker database, in use and free (free pages are given back after a drain)',
    labelNames: ['state'] as const,
    registers,
    collect() {
      const { pageSize, pageCount, freePages } = reclaimer.reading();
      this.set({ state: 'used' }, (pageCount - freePages) * pageSize);
      this.set({ state: 'free' }, freePages * pageSize);
    },
  });
  new Gauge({
    name: 'broker_reclaimed_bytes_total',
    help: 'Disk space given back after drains (monotonic while the broker runs)',
    registers,
    collect() {
      this.set(reclaimer.reclaimedPages * (reclaimer.reading().pageSize || 4096));
    },
  });
  const sessionDropped = new Counter({
    name: 'mqtt_session_dropped_messages_total',
    help: 'Messages not kept for a persistent session whose queue was full (its user\'s "#@ queue" rule in the ACL); a connected client still gets them live',
    registers,
  });
  const sessionsEnded = new Counter({
    name: 'mqtt_sessions_ended_total',
    help: 'Persistent sessions ended, the one away the longest, to keep their user within its "#@ sessions" bound in the ACL',
    labelNames: ['user'] as const,
    registers,
  });
  return { refused, sessionDropped, sessionsEnded };
}

/** The persistent sessions each user with a "#@ sessions" bound keeps now (the users with sessions). */
export function registerSessionCount({ registry }: Metrics, counts: () => Map<string, number> | Promise<Map<string, number>>): void {
  new Gauge({
    name: 'mqtt_capped_sessions',
    help: 'Persistent sessions kept now by a user with a "#@ sessions" bound in the ACL',
    labelNames: ['user'] as const,
    registers: [registry],
    async collect() {
      const now = await counts();
      this.reset();
      for (const [user, n] of now) this.set({ user }, n);
    },
  });
}

/** Is this the 1st, 10th, 100th… occurrence? What the broker logs of what a client may repeat without end. */
export const tenfold = (n: number): boolean => Number.isInteger(Math.log10(n));

/** Counts occurrences per key: the count at a key's 1st, 10th, 100th… (one to log), else undefined. Past 10,000 keys it starts over. */
function tenfoldCounter(): (key: string) => number | undefined {
  const counts = new Map<string, number>();
  return (key) => {
    const n = (counts.get(key) ?? 0) + 1;
    if (counts.size > 10_000) counts.clear();
    counts.set(key, n);
    return tenfold(n) ? n : undefined;
  };
}

/**
 * What the broker does when it ends a session to make room for another of the same user: counts it,
 * and logs it at the user's 1st, 10th, 100th… (not each: a stranger looping over client ids ends
 * one per new session).
 */
export function endReporter(log: Logger, ended: Counter<'user'>): (user: string, clientId: string, limit: number) => void {
  const nth = tenfoldCounter();
  return (user, clientId, limit) => {
    ended.inc({ user });
    const n = nth(user);
    if (n) log.warn({ user, clientId, limit, ended: n }, 'persistent session ended, the one away the longest: its user keeps at most this many ("#@ sessions" in the ACL)');
  };
}

/**
 * What the broker does when a message finds an away session's queue full: counts it, and logs it at
 * a session's 1st, 10th, 100th… drop (not each: a full queue on a busy topic drops every message).
 */
export function dropReporter(log: Logger, dropped: Counter): (clientId: string, topic: string | undefined) => void {
  const nth = tenfoldCounter();
  return (clientId, topic) => {
    dropped.inc();
    const n = nth(clientId);
    if (n) log.warn({ clientId, topic, dropped: n }, 'persistent session with its queue full: message not kept for it ("#@ queue" in the ACL)');
  };
}
