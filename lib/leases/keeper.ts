// The lease keeper of one worker process: how much of the ERP's capacity it may use right now.
// The shared capacity C is split into P partitions (uneven shares exact, see partitionCapacities);
// each tick the keeper compares what it holds with its demand (from the backlog, capped at a fair
// share: max-min fair among the processes that announce they want capacity), acquires missing
// partitions in random order, renews held ones about every TTL/3 while still needed, and releases
// surplus ones at once. Validity is counted from the moment a request was sent, minus a margin, so
// a slow answer or a drifting clock never makes us use a partition past its expiry in the store.
// If the store cannot be reached, held leases run out and the process paces at its reserved
// capacity alone, which needs no lease.
import type { Logger } from '../log.js';
import { fairShares, partitionCapacities, type Grant, type LeaseStore } from './store.js';

export interface Held extends Grant {
  capacity: number;
  /** Local time until which we may use it: when the request that granted or renewed it was sent, + TTL − margin. */
  validUntil: number;
  /** When the last acquire or renew request was sent. */
  sentAt: number;
}

export interface KeeperOptions {
  store: LeaseStore;
  /** Unique per process (e.g. the worker id plus pid). */
  owner: string;
  /** Shared capacity C, request units per second, divided into partitions. */
  capacity: number;
  partitions: number;
  /** Capacity this process may use without any lease. */
  reservedCapacity?: number;
  ttlMs?: number;
  /** Subtracted from every validity, for clock rate drift and requests in flight. */
  marginMs?: number;
  tickMs?: number;
  /** Most acquire attempts per tick (each is one statement or round trip). */
  maxAttemptsPerTick?: number;
  /** Request units per second this process could use now (from its backlog), before the fair-share cap. */
  demand: () => number;
  /** Called whenever the usable capacity (reserved + valid leases) changes. */
  onChange?: (capacity: number, held: readonly Held[]) => void;
  log?: Logger;
  now?: () => number;
  random?: () => number;
}

export class LeaseKeeper {
  readonly capacities: number[];
  readonly #opts: Required<Omit<KeeperOptions, 'log' | 'onChange'>> & Pick<KeeperOptions, 'log' | 'onChange'>;
  readonly #held = new Map<number, Held>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #members = 1;
  #announced = false;
  #reachable = true;
  #lastCapacity = -1;
  #stopped = true;

  constructor(options: KeeperOptions) {
    const ttlMs = options.ttlMs ?? 15_000;
    this.#opts = {
      reservedCapacity: 0,
      ttlMs,
      marginMs: Math.min(1000, ttlMs / 10),
      tickMs: 250,
      maxAttemptsPerTick: 32,
      now: Date.now,
      random: Math.random,
      ...options,
    };
    this.capacities = partitionCapacities(options.capacity, options.partitions);
  }

  /** Partitions held and still valid. */
  get held(): readonly Held[] {
    const now = this.#opts.now();
    return [...this.#held.values()].filter((h) => h.validUntil > now);
  }

  /** Reserved capacity plus that of every valid lease: what the pacer may spend. */
  get capacity(): number {
    return this.#opts.reservedCapacity + this.held.reduce((sum, h) => sum + h.capacity, 0);
  }

  /** Processes that wanted capacity at the last tick (this one included). */
  get members(): number {
    return this.#members;
  }

  get storeReachable(): boolean {
    return this.#reachable;
  }

  /** Partitions wanted for `demand` RU/s beyond the reserved capacity: enough to cover it. */
  wanted(demand: number): number {
    const { partitions, capacity, reservedCapacity } = this.#opts;
    const beyond = Math.max(0, demand - reservedCapacity);
    if (beyond <= 0 || capacity <= 0) return 0;
    return Math.min(partitions, Math.ceil(beyond / (capacity / partitions) - 1e-9));
  }

  /** Starts ticking; a keeper already ticking goes on as it is (one round at a time). */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#notify();
    const loop = () => {
      this.#running = this.tick().finally(() => {
        this.#running = undefined;
        if (!this.#stopped) this.#timer = setTimeout(loop, this.#opts.tickMs);
      });
    };
    loop();
  }

  /** Stops ticking and releases every lease (best effort: they expire anyway). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    const held = [...this.#held.values()];
    this.#held.clear();
    this.#notify();
    await Promise.allSettled([...held.map((h) => this.#opts.store.release(h)), this.#opts.store.withdraw(this.#opts.owner)]);
  }

  /** One round: forget expired leases, then announce, release, renew and acquire as the demand says. */
  async tick(): Promise<void> {
    const { store, owner, now } = this.#opts;
    for (const [p, h] of this.#held) if (h.validUntil <= now()) this.#lose(p, 'expired before renewal');
    this.#notify();
    try {
      const wanted = this.wanted(Math.max(0, this.#opts.demand()));
      let target = 0;
      if (wanted > 0) {
        // Everyone who wants capacity announces it (for a few ticks only: a killed process stops
        // counting quickly) and gets the same max-min fair share computed from the same list.
        const members = await store.announce(owner, wanted, Math.max(2000, this.#opts.tickMs * 4));
        this.#members = Math.max(1, members.length);
        target = fairShares(this.#opts.partitions, members).get(owner) ?? wanted;
        this.#announced = true;
      } else if (this.#announced) {
        await store.withdraw(owner);
        this.#announced = false;
      }
      await this.#releaseSurplus(target);
      await this.#renew();
      await this.#acquire(target);
      this.#setReachable(true);
    } catch (err) {
      this.#setReachable(false, err);
    }
    this.#notify();
  }

  async #releaseSurplus(target: number) {
    const surplus = this.#held.size - target;
    if (surplus <= 0) return;
    // Give back the smallest-capacity partitions first, the ones held longest among equals.
    const order = [...this.#held.values()].sort((a, b) => a.capacity - b.capacity || a.sentAt - b.sentAt);
    for (const h of order.slice(0, surplus)) {
      this.#held.delete(h.partition);
      this.#notify();
      await this.#opts.store.release(h);
      this.#opts.log?.debug({ partition: h.partition, epoch: h.epoch }, 'lease released');
    }
  }

  async #renew() {
    const { store, ttlMs, marginMs, now } = this.#opts;
    for (const h of [...this.#held.values()]) {
      if (now() - h.sentAt < ttlMs / 3) continue;
      const sentAt = now();
      const ok = await store.renew(h, ttlMs);
      if (ok) Object.assign(h, { sentAt, validUntil: sentAt + ttlMs - marginMs });
      else this.#lose(h.partition, 'renewal refused');
    }
  }

  async #acquire(target: number) {
    const { store, owner, ttlMs, marginMs, now, maxAttemptsPerTick, partitions } = this.#opts;
    let missing = target - this.#held.size;
    if (missing <= 0) return;
    const candidates = this.#shuffle([...Array(partitions).keys()].filter((p) => !this.#held.has(p)));
    for (const partition of candidates.slice(0, Math.max(missing, maxAttemptsPerTick))) {
      if (missing <= 0) break;
      const sentAt = now();
      const grant = await store.acquire(partition, owner, ttlMs);
      if (!grant) continue;
      this.#held.set(partition, { ...grant, capacity: this.capacities[partition]!, sentAt, validUntil: sentAt + ttlMs - marginMs });
      missing--;
      this.#opts.log?.debug({ partition, epoch: grant.epoch }, 'lease acquired');
    }
  }

  #lose(partition: number, why: string) {
    const h = this.#held.get(partition);
    this.#held.delete(partition);
    this.#opts.log?.info({ partition, epoch: h?.epoch, why }, 'lease lost');
  }

  #setReachable(ok: boolean, err?: unknown) {
    if (ok !== this.#reachable) {
      if (ok) this.#opts.log?.info('lease store reachable again');
      else this.#opts.log?.warn({ err: (err as Error)?.message }, 'lease store unreachable; pacing on held leases, then reserved capacity alone');
    }
    this.#reachable = ok;
  }

  #notify() {
    const capacity = this.capacity;
    if (capacity === this.#lastCapacity) return;
    this.#lastCapacity = capacity;
    this.#opts.onChange?.(capacity, this.held);
  }

  #shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.#opts.random() * (i + 1));
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}
