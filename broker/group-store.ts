// Where a shared subscription's queue lives (the group queue, group-queue.ts, keeps only a bounded
// window of it in memory). One entry per message per group until a member acknowledges it; each
// entry is the PUBLISH packet members receive (broker/publish-packet.ts), so handing it out copies bytes.
//
// Implemented on SQLite for one broker node (sqlite-group-store.ts). The shape is the one a Redis
// Streams implementation needs for several nodes (one stream per group, one consumer group on it):
//   append → XADD per entry, acknowledged to the publisher once Redis holds it (AOF, WAIT);
//   read   → XREADGROUP … COUNT <room> STREAMS <stream> > : the next entries nobody has taken;
//   ack    → XACK + XDEL;
//   claim  → XAUTOCLAIM: entries a departed member (or node) held past the grace period;
//   count  → the group's length (XLEN), kept without reading the entries;
//   drop   → DEL, when the last member leaves.
// On one node a departed member's entries are still in this node's memory, so the SQLite store has
// nothing to claim; after a restart it reads every unacknowledged entry again from the start.

/** Opaque to the group queue; ordered within a group by the store. */
export type EntryId = number | string;

export interface StoredEntry {
  id: EntryId;
  /** The PUBLISH packet, packet identifier 0 (broker/publish-packet.ts stamps it when sending). */
  packet: Buffer;
}

export interface NewEntry {
  share: string;
  packet: Buffer;
}

export interface GroupStore {
  /** Groups that hold entries, with how many: read at start instead of the entries themselves. */
  groups(): Map<string, number>;
  /** Makes sure the group's queue exists; returns how many entries it holds. */
  open(share: string): number;
  /**
   * Adds entries to their groups' queues; resolves (with their ids, in the order given) once they
   * are durable: the publisher's PUBACK waits for it.
   */
  append(entries: readonly NewEntry[]): Promise<StoredEntry[]>;
  /** Up to `limit` entries of the group after `after` (or from its start), oldest first. */
  read(share: string, after: EntryId | undefined, limit: number): Promise<StoredEntry[]>;
  /** Entries acknowledged by a member: gone for good (durable soon after; until then a crash redelivers them). */
  ack(share: string, ids: readonly EntryId[]): void;
  /** Entries held by members that left (other nodes' members included) and are to be handed to others. */
  claim(share: string, limit: number): Promise<StoredEntry[]>;
  /** The group's last member left: its queue goes. */
  drop(share: string): void;
}
