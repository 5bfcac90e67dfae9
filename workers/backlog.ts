// How much work waits for each workflow, which drives both lease demand and the split of capacity
// between workflows. The broker knows best: it exposes each shared group's queue depth and in-flight
// count (at /groups, and at its /metrics), which covers every worker's share (a process alone sees only the few
// messages in its windows). When the broker's metrics cannot be read, or were not configured, a
// process falls back to what it sees itself: operations waiting for pacing credit.
import { request } from 'undici';
import type { Logger } from '../lib/log.js';

export interface BacklogOptions {
  /** The broker's Prometheus endpoint, e.g. http://127.0.0.1:3006/metrics; unset = local only. */
  metricsUrl?: string | undefined;
  /** share name (`$share/<group>/<filter>`) per workflow */
  shares: Record<string, string>;
  intervalMs?: number;
  /** Readings older than this are not trusted. */
  staleMs?: number;
  log?: Logger;
}

/** Parses `mqtt_shared_queue_depth{share="…"} 12` style lines: share → value, for one metric. */
export function parseShareGauge(text: string, metric: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const share = /share="([^"]*)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (share !== undefined && Number.isFinite(value)) out.set(share, value);
  }
  return out;
}

export class BrokerBacklog {
  #timer: NodeJS.Timeout | undefined;
  #readAt = 0;
  #values = new Map<string, number>();
  #failing = false;

  constructor(private readonly opts: BacklogOptions) {}

  start(): void {
    if (!this.opts.metricsUrl) return;
    // Our broker's /groups beside its /metrics is the same figures without rendering every metric;
    // a broker without it (404) is read from its Prometheus text instead.
    const groupsUrl = new URL('/groups', this.opts.metricsUrl).href;
    let useGroups = true;
    const read = async (): Promise<{ depth: Map<string, number>; inflight: Map<string, number> }> => {
      if (useGroups) {
        const res = await request(groupsUrl, { headersTimeout: 1000, bodyTimeout: 1000 });
        if (res.statusCode === 200) {
          const groups = (await res.body.json()) as Array<{ share: string; depth: number; inflight: number }>;
          return { depth: new Map(groups.map((g) => [g.share, g.depth])), inflight: new Map(groups.map((g) => [g.share, g.inflight])) };
        }
        await res.body.dump();
        useGroups = false;
      }
      const res = await request(this.opts.metricsUrl!, { headersTimeout: 1000, bodyTimeout: 1000 });
      const text = await res.body.text();
      return { depth: parseShareGauge(text, 'mqtt_shared_queue_depth'), inflight: parseShareGauge(text, 'mqtt_shared_inflight') };
    };
    const poll = async () => {
      try {
        const { depth, inflight } = await read();
        const values = new Map<string, number>();
        for (const [workflow, share] of Object.entries(this.opts.shares)) values.set(workflow, (depth.get(share) ?? 0) + (inflight.get(share) ?? 0));
        this.#values = values;
        this.#readAt = Date.now();
        if (this.#failing) this.opts.log?.info('broker metrics readable again');
        this.#failing = false;
      } catch (err) {
        if (!this.#failing) this.opts.log?.warn({ err: (err as Error).message }, 'cannot read broker metrics; estimating backlog locally');
        this.#failing = true;
      }
      this.#timer = setTimeout(poll, this.opts.intervalMs ?? 250);
    };
    void poll();
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  /** Messages waiting for the workflow's group across all workers, or undefined without a fresh reading. */
  get(workflow: string): number | undefined {
    if (Date.now() - this.#readAt > (this.opts.staleMs ?? 2000)) return undefined;
    return this.#values.get(workflow);
  }
}
