// Live figures for displays and the dashboard: a process publishes a small JSON snapshot, retained,
// on woodytoys/public/stats/<name> once a second, so a subscriber sees the current figures at once.
// QoS 0 on purpose: a snapshot that is lost is replaced a second later. Public: counts and rates
// only, never anything about a customer.
import type { MqttClient } from './mqtt.js';
import { PUBLIC_ROOT } from './topics.js';

export const statsTopic = (name: string) => `${PUBLIC_ROOT}/stats/${name}`;

export class StatsPublisher {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: MqttClient,
    private readonly name: string,
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
    this.client.publish(statsTopic(this.name), body, { qos: 0, retain: true });
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
