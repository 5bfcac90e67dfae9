// Live figures for displays and the dashboard: a process publishes a small JSON snapshot, retained,
// on woodytoys/public/stats/<name> once a second, so a subscriber sees the current figures at once.
// QoS 0 on purpose: a snapshot that is lost is replaced a second later. Public: counts and rates
// only, never anything about a customer.
import { z } from 'zod';
import type { MqttClient } from './mqtt.js';
import { PUBLIC_ROOT } from './topics.js';

/** The processes with figures of their own; each worker publishes under workers/<WORKER_ID>. */
export const STATS_PUBLISHERS = ['broker', 'orders', 'deadletters', 'erp'] as const;
export type StatsName = (typeof STATS_PUBLISHERS)[number] | `workers/${string}`;

export const statsTopic = (name: string) => `${PUBLIC_ROOT}/stats/${name}`;

/** How snapshots travel: a lost one is replaced a second later, and the last one waits for new subscribers. */
export const STATS_DELIVERY = { qos: 0, retain: true } as const;

/** What every snapshot carries; the rest are the publisher's own counts and rates (lib/asyncapi.ts documents it). */
export const statsSnapshot = z.looseObject({
  name: z.string().min(1),
  at: z.iso.datetime({ offset: true }),
});

export class StatsPublisher {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: MqttClient,
    private readonly name: StatsName,
    private readonly snapshot: () => Record<string, unknown>,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.publish(), this.intervalMs);
    this.timer.unref();
  }

  publish(): void {
    if (!this.client.connected) return;
    const body = JSON.stringify({ name: this.name, at: new Date().toISOString(), ...this.snapshot() });
    this.client.publish(statsTopic(this.name), body, STATS_DELIVERY);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
