// The broker's live figures for displays and the dashboard (lib/stats.ts describes the snapshots):
// connected clients and each group's backlog, on woodytoys/public/stats/broker once a second.
// Published through the broker itself: it is no MQTT client of its own, so lib/stats.ts's
// StatsPublisher (which publishes through an mqtt.js client) does not fit.
import type { Aedes } from 'aedes';
import { STATS_DELIVERY, statsTopic } from '../lib/stats.js';
import { parseShare, type SharedSubscriptions } from './group-queue.js';

/** The snapshot's own part: clients, and per group its filter, backlog, messages in flight and members. */
type GroupStats = Pick<SharedSubscriptions['stats'][number], 'share' | 'depth' | 'inflight' | 'members' | 'online'>;

export function brokerFigures(connectedClients: number, groups: GroupStats[]) {
  return {
    clients: connectedClients,
    groups: groups.map((q) => {
      const parsed = parseShare(q.share);
      return typeof parsed === 'string'
        ? { group: q.share, depth: q.depth, inFlight: q.inflight }
        : { group: parsed.group, filter: parsed.filter, depth: q.depth, inFlight: q.inflight, members: q.members, online: q.online };
    }),
  };
}

export class BrokerStats {
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly broker: Aedes,
    private readonly shared: SharedSubscriptions,
    /** Clients connected now (countConnected, aedes-adapter.ts), as the Prometheus gauge says. */
    private readonly connected: () => number,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    this.#timer = setInterval(() => this.publish(), this.intervalMs);
    this.#timer.unref();
  }

  publish(): void {
    const payload = JSON.stringify({ name: 'broker', at: new Date().toISOString(), ...brokerFigures(this.connected(), this.shared.stats) });
    this.broker.publish({ cmd: 'publish', topic: statsTopic('broker'), payload: Buffer.from(payload), ...STATS_DELIVERY, dup: false }, () => {});
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
