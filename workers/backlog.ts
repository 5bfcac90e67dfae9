// How much work waits for each workflow, which drives both lease demand and the split of capacity
// between workflows. The broker knows best: it exposes each shared group's queue depth and in-flight
// count at its /metrics, which covers every worker's share (a process alone sees only the few
// messages in its windows). When the broker's metrics cannot be read, or were not configured, a
// process falls back to what it sees itself: operations waiting for pacing credit.
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
    const poll = async () => {
      try {
        const res = await fetch(this.opts.metricsUrl!, { signal: AbortSignal.timeout(1000) });
        const text = await res.text();
        const depth = parseShareGauge(text, 'mqtt_shared_queue_depth');
        const inflight = parseShareGauge(text, 'mqtt_shared_inflight');
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
