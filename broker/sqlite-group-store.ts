// The group queues on SQLite (one broker node): the broker's own database, written through its
// group commit, so that a publish's entries commit in the same transaction as the rest of its ingest.
// Entries are clustered by group and id (one B-tree, schema.ts), so a window is one range read and
// acknowledged entries go in a few range deletes; each group's count is kept beside it.
import type { DB } from '../lib/db.js';
import type { CommitQueue } from './commit-queue.js';
import type { EntryId, GroupStore, NewEntry, StoredEntry } from './group-store.js';

interface Group {
  id: number;
  nextId: number;
}

/** Sorted ids → [first, last] runs of consecutive ids: one range delete each. */
export function runsOf(sorted: readonly number[]): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (const id of sorted) {
    const last = runs.at(-1);
    if (last && id === last[1] + 1) last[1] = id;
    else if (!last || id > last[1]) runs.push([id, id]);
  }
  return runs;
}

/** The store's statements, with the types of their parameters and rows: the one place rows are typed. */
const statements = (db: DB) => ({
  insert: db.prepare<[groupId: number, id: number, packet: Buffer]>('INSERT INTO group_messages (group_id, id, packet) VALUES (?, ?, ?)'),
  read: db.prepare<[groupId: number, after: number, limit: number], [id: number, packet: Buffer]>('SELECT id, packet FROM group_messages WHERE group_id = ? AND id > ? ORDER BY id LIMIT ?').raw(true),
  remove: db.prepare<[groupId: number, from: number, to: number]>('DELETE FROM group_messages WHERE group_id = ? AND id BETWEEN ? AND ?'),
  count: db.prepare<[delta: number, groupId: number]>('UPDATE groups SET stored = stored + ? WHERE id = ?'),
  dropEntries: db.prepare<[groupId: number]>('DELETE FROM group_messages WHERE group_id = ?'),
  dropGroup: db.prepare<[groupId: number]>('DELETE FROM groups WHERE id = ?'),
  allGroups: db.prepare<[], { id: number; share: string }>('SELECT id, share FROM groups'),
  lastId: db.prepare<[groupId: number], { id: number | null }>('SELECT max(id) AS id FROM group_messages WHERE group_id = ?'),
  stored: db.prepare<[], { share: string; stored: number }>('SELECT share, stored FROM groups'),
  storedOf: db.prepare<[groupId: number], { stored: number }>('SELECT stored FROM groups WHERE id = ?'),
  addGroup: db.prepare<[share: string], { id: number }>('INSERT INTO groups (share) VALUES (?) RETURNING id'),
});

export class SqliteGroupStore implements GroupStore {
  readonly #groups = new Map<string, Group>();
  /** Entries to insert with the next commit, and acknowledged ids to delete, per group id. */
  #inserts: Array<[number, number, Buffer]> = [];
  #deletes = new Map<number, number[]>();
  readonly #sql: ReturnType<typeof statements>;

  constructor(
    private readonly db: DB,
    private readonly commits: CommitQueue,
  ) {
    this.#sql = statements(db);
    for (const g of this.#sql.allGroups.all()) {
      this.#groups.set(g.share, { id: g.id, nextId: (this.#sql.lastId.get(g.id)!.id ?? 0) + 1 });
    }
  }

  groups(): Map<string, number> {
    const rows = this.#sql.stored.all();
    return new Map(rows.map((r) => [r.share, r.stored]));
  }

  open(share: string): number {
    const known = this.#groups.get(share);
    if (known) return this.#sql.storedOf.get(known.id)!.stored;
    const { id } = this.#sql.addGroup.get(share)!;
    this.#groups.set(share, { id, nextId: 1 });
    return 0;
  }

  append(entries: readonly NewEntry[]): { stored: StoredEntry[]; durable: Promise<void> } {
    const stored: StoredEntry[] = [];
    if (this.#inserts.length === 0) this.commits.queue(() => this.#write());
    for (const { share, packet } of entries) {
      const group = this.#group(share);
      const id = group.nextId++;
      this.#inserts.push([group.id, id, packet]);
      stored.push({ id, packet });
    }
    // The entries commit with this turn's group commit, with the rest of the publish's ingest.
    return { stored, durable: this.commits.write(() => {}) };
  }

  read(share: string, after: EntryId | undefined, limit: number): Promise<StoredEntry[]> {
    const group = this.#groups.get(share);
    if (!group || limit <= 0) return Promise.resolve([]);
    // Entries queued for insertion but not yet written are not read: the queue holds those in memory.
    const rows = this.#sql.read.all(group.id, Number(after ?? 0), limit);
    return Promise.resolve(rows.map(([id, packet]) => ({ id, packet })));
  }

  ack(share: string, ids: readonly EntryId[]): void {
    const group = this.#groups.get(share);
    if (!group || ids.length === 0) return;
    if (this.#deletes.size === 0 && this.#inserts.length === 0) this.commits.queue(() => this.#write());
    let list = this.#deletes.get(group.id);
    if (!list) this.#deletes.set(group.id, (list = []));
    for (const id of ids) list.push(Number(id));
  }

  claim(): Promise<StoredEntry[]> {
    // One node: a departed member's entries are still in this node's memory (see group-store.ts).
    return Promise.resolve([]);
  }

  drop(share: string): void {
    const group = this.#groups.get(share);
    if (!group) return;
    this.#groups.delete(share);
    this.commits.queue(() => {
      this.#sql.dropEntries.run(group.id);
      this.#sql.dropGroup.run(group.id);
    });
  }

  #group(share: string): Group {
    const group = this.#groups.get(share);
    if (group) return group;
    this.open(share);
    return this.#groups.get(share)!;
  }

  /** Inside the group commit: this turn's inserts, then acknowledged entries as range deletes. */
  #write(): void {
    const inserts = this.#inserts;
    const deletes = this.#deletes;
    this.#inserts = [];
    this.#deletes = new Map();
    const added = new Map<number, number>();
    for (const [groupId, id, packet] of inserts) {
      this.#sql.insert.run(groupId, id, packet);
      added.set(groupId, (added.get(groupId) ?? 0) + 1);
    }
    for (const [groupId, ids] of deletes) {
      let removed = 0;
      for (const [first, last] of runsOf(ids.sort((a, b) => a - b))) removed += this.#sql.remove.run(groupId, first, last).changes;
      added.set(groupId, (added.get(groupId) ?? 0) - removed);
    }
    for (const [groupId, n] of added) if (n !== 0) this.#sql.count.run(n, groupId);
  }
}
