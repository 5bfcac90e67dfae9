// Where a shared subscription's queue lives (the group queue, group-queue.ts, keeps only a bounded
// window of it in memory). One entry per message per group until a member acknowledges it; each
// entry is the PUBLISH packet members receive (broker/publish-packet.ts), so handing it out copies bytes.
//
// Two shapes. GroupStore, on SQLite for one broker node (sqlite-group-store.ts): the node knows
// every group and member, stages each publish's entries itself and reads a group's entries in
// order, for whichever member has room. After a restart it reads every unacknowledged entry again
// from the start; a departed member's entries are still in the node's memory, so it has nothing to
// claim. ClusterGroupStore (below), on Redis Streams for several nodes (redis-group-store.ts): no
// node knows every group, so the store routes publishes; entries are read and held per member,
// since a member may come back on another node, and what a departed member held is claimed there:
//   route → one Lua script: the topic against every group's filter, XADD to each match; the
//           publisher's PUBACK waits for it (Redis's AOF with appendfsync always);
//   take  → XREADGROUP … COUNT <the member's room> … > : the next entries nobody has taken;
//   ack   → XACK + XDEL;
//   keep  → what members still hold, renewed (XCLAIM … JUSTID) so that nobody claims it;
//   claim → XAUTOCLAIM: entries untouched past the grace period (their member left);
//   held  → a returning member's own pending entries (XPENDING + XCLAIM);
//   leave → the member's entries parked for an immediate claim; the last member takes the stream along.

/** Opaque to the group queue; ordered within a group by the store. */
export type EntryId = number | string;

export interface StoredEntry {
  id: EntryId;
  /** The PUBLISH packet, packet identifier 0 (broker/publish-packet.ts stamps it when sending). */
  packet: Buffer;
}

export interface NewEntry {
  /** Empty when the store routes by topic (ClusterGroupStore): this node does not know every group. */
  share: string;
  packet: Buffer;
  topic?: string;
}

export interface GroupStore {
  /** Groups that hold entries, with how many: read at start instead of the entries themselves. */
  groups(): Map<string, number>;
  /** Makes sure the group's queue exists; returns how many entries it holds. */
  open(share: string): number;
  /**
   * Adds entries to their groups' queues. Their ids (in the order given) come at once, so that the
   * group queue knows where its next read starts; `durable` resolves once they are written.
   */
  append(entries: readonly NewEntry[]): { stored: StoredEntry[]; durable: Promise<void> };
  /** Up to `limit` entries of the group after `after` (or from its start), oldest first. */
  read(share: string, after: EntryId | undefined, limit: number): Promise<StoredEntry[]>;
  /** Entries acknowledged by a member: gone for good (durable soon after; until then a crash redelivers them). */
  ack(share: string, ids: readonly EntryId[]): void;
  /** Entries held by members that left (other nodes' members included) and are to be handed to others. */
  claim(share: string, limit: number): Promise<StoredEntry[]>;
  /** The group's last member left: its queue goes. */
  drop(share: string): void;
}

/**
 * The group queues of several broker nodes (redis-group-store.ts): the store, not a node, knows
 * each group's members and routes publishes to the groups whose filter matches, so a member that
 * joins on one node gets what is published on any other from its SUBACK on. Entries are read and
 * held per member (a consumer of the group's stream), so a member that comes back on another node
 * finds what it held, and a member gone past the grace period leaves entries any node can claim.
 */
export interface ClusterGroupStore {
  /** Adds each publish to the queue of every group whose filter matches its topic; resolves once durable, with the groups each went to. */
  route(publishes: readonly { topic: string; packet: Buffer }[]): Promise<string[][]>;
  /**
   * These groups, and only these, are declared from now on: each exists with or without members and
   * stays when its last member leaves. A group declared before but not now goes if it has no member
   * (returned, with the messages it held). Every node must be given the same list.
   */
  declare(shares: readonly string[]): Promise<{ share: string; messages: number }[]>;
  /** The client is a member of the group (the group is created with its first member, unless declared). */
  join(share: string, clientId: string): Promise<void>;
  /** The client leaves the group: what it held goes to the other members at once; the queue goes with the last member. */
  leave(share: string, clientId: string): Promise<void>;
  /** Every group the client is a member of. */
  memberships(clientId: string): Promise<string[]>;
  /** Up to `limit` entries nobody has taken, now held by `clientId`. */
  take(share: string, clientId: string, limit: number): Promise<StoredEntry[]>;
  /** Up to `limit` entries nobody has touched for `idleMs` (their member left), now held by `clientId`. */
  claim(share: string, clientId: string, idleMs: number, limit: number): Promise<StoredEntry[]>;
  /** What `clientId` held (on a previous connection, on any node), held again from now. */
  held(share: string, clientId: string): Promise<StoredEntry[]>;
  /** Entries `clientId` still holds: nobody may claim them for another `idleMs`. */
  keep(share: string, clientId: string, ids: readonly EntryId[]): Promise<void>;
  /** Entries acknowledged by their member: gone for good. */
  ack(share: string, ids: readonly EntryId[]): void;
  /** Entries of the group not yet acknowledged, and how many of them members hold. */
  depth(share: string): Promise<{ stored: number; held: number }>;
  /** Calls `listener` with the groups that got entries, whichever node added them. */
  onAppended(listener: (shares: string[]) => void): void;
}
