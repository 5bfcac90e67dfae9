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
   * Says `owner` wants `wanted` partitions for the next ttlMs; answers every owner that wants some
   * now (this one included), ordered by name, so each can work out the same fair shares.
   */
  announce(owner: string, wanted: number, ttlMs: number): Promise<Member[]>;
  /** `owner` no longer wants capacity. */
  withdraw(owner: string): Promise<void>;
  close(): Promise<void>;
}

export interface Member {
  owner: string;
  wanted: number;
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

/**
 * Max-min fair shares of `partitions` among members by what they want: nobody gets more than it
 * wants, what one does not want goes to the others, and the last indivisible partitions go to the
 * first members by name. Every process computes the same answer from the same member list.
 */
export function fairShares(partitions: number, members: readonly Member[]): Map<string, number> {
  const shares = new Map<string, number>();
  let left = [...members].filter((m) => m.wanted > 0).sort((a, b) => (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : 0));
  let remaining = partitions;
  for (;;) {
    if (left.length === 0) return shares;
    const even = Math.floor(remaining / left.length);
    const satisfied = left.filter((m) => m.wanted <= even);
    if (satisfied.length === 0) break;
    for (const m of satisfied) {
      shares.set(m.owner, m.wanted);
      remaining -= m.wanted;
    }
    left = left.filter((m) => m.wanted > even);
  }
  const even = Math.floor(remaining / left.length);
  let extra = remaining - even * left.length;
  for (const m of left) {
    const share = Math.min(m.wanted, even + (extra > 0 ? 1 : 0));
    if (share > even) extra--;
    shares.set(m.owner, share);
  }
  return shares;
}
