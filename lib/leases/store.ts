// Leases on capacity partitions (the Rate Limiting pattern): the one small interface both backends
// implement. A lease is exclusive for a time judged by the store's own clock; every acquire of a
// partition gets a higher fencing epoch, and only the holder of the token can renew or release it.
import { randomBytes } from 'node:crypto';

export interface Grant {
  partition: number;
  /** Random, per acquire: renew and release compare it, so nobody frees someone else's lease. */
  token: string;
  /** Fencing epoch: strictly increases with every acquire of this partition. */
  epoch: number;
}

export interface LeaseStore {
  readonly kind: 'sqlite' | 'redis';
  /** Takes the partition for ttlMs if it is free or its lease expired; undefined if someone holds it. */
  acquire(partition: number, owner: string, ttlMs: number): Promise<Grant | undefined>;
  /** Extends our lease by ttlMs from now; false if it expired or someone else holds the partition. */
  renew(grant: Grant, ttlMs: number): Promise<boolean>;
  /** Frees the partition at once if the lease is still ours; false otherwise. */
  release(grant: Grant): Promise<boolean>;
  /**
   * Says `owner` wants capacity for the next ttlMs; answers how many owners want it now (this one
   * included), which is what a fair share is divided by.
   */
  announce(owner: string, ttlMs: number): Promise<number>;
  /** `owner` no longer wants capacity. */
  withdraw(owner: string): Promise<void>;
  close(): Promise<void>;
}

export const newToken = () => randomBytes(16).toString('hex');

/**
 * The capacities of `count` partitions of `capacity` units, exactly: the remainder goes one unit
 * at a time to the first partitions (20,000 over 7 → one of 2,858 and six of 2,857).
 */
export function partitionCapacities(capacity: number, count: number): number[] {
  if (!Number.isInteger(capacity) || capacity < 0) throw new RangeError('capacity must be a whole number of units');
  if (!Number.isInteger(count) || count < 1) throw new RangeError('there must be at least one partition');
  const base = Math.floor(capacity / count);
  const extra = capacity - base * count;
  return Array.from({ length: count }, (_, i) => base + (i < extra ? 1 : 0));
}
