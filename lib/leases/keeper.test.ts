// The lease keeper against a real SQLite lease store, on a hand-driven clock: how many partitions it
// holds for a demand, how several keepers share them, and what it falls back to.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LeaseKeeper, type KeeperOptions } from './keeper.js';
import { SqliteLeaseStore } from './sqlite.js';
import { partitionCapacities, type LeaseStore } from './store.js';

const dir = mkdtempSync(join(tmpdir(), 'keeper-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const freshFile = () => join(dir, `leases-${++files}.db`);

/** A store that can be made unreachable, counting renewals. */
class FlakyStore implements LeaseStore {
  readonly kind = 'sqlite' as const;
  down = false;
  renewals = 0;
  constructor(private readonly inner: LeaseStore) {}
  #check() {
    if (this.down) throw new Error('store unreachable');
  }
  async acquire(...args: Parameters<LeaseStore['acquire']>) {
    this.#check();
    return this.inner.acquire(...args);
  }
  async renew(...args: Parameters<LeaseStore['renew']>) {
    this.#check();
    this.renewals++;
    return this.inner.renew(...args);
  }
  async release(...args: Parameters<LeaseStore['release']>) {
    this.#check();
    return this.inner.release(...args);
  }
  async announce(...args: Parameters<LeaseStore['announce']>) {
    this.#check();
    return this.inner.announce(...args);
  }
  async withdraw(owner: string) {
    this.#check();
    return this.inner.withdraw(owner);
  }
  close() {
    return this.inner.close();
  }
}

function keeper(store: LeaseStore, owner: string, options: Partial<KeeperOptions> & { demand: () => number }) {
  const clock = { now: 1_000_000 };
  const k = new LeaseKeeper({ store, owner, capacity: 20_000, partitions: 20, ttlMs: 15_000, now: () => clock.now, ...options });
  return { k, clock };
}

describe('partition capacities', () => {
  it('splits an uneven capacity exactly', () => {
    const caps = partitionCapacities(20_000, 7);
    assert.deepEqual(caps, [2858, 2857, 2857, 2857, 2857, 2857, 2857]);
    assert.equal(caps.reduce((a, b) => a + b), 20_000);
    assert.equal(partitionCapacities(500, 20).reduce((a, b) => a + b), 500);
  });
});

describe('lease keeper', () => {
  it('holds just enough partitions for its demand, and releases them when it has none', async () => {
    const store = new SqliteLeaseStore({ file: freshFile() });
    let demand = 5000;
    const { k } = keeper(store, 'a', { demand: () => demand });
    await k.tick();
    assert.equal(k.held.length, 5, '5,000 RU/s of 1,000 RU partitions');
    assert.equal(k.capacity, 5000);
    demand = 7400;
    await k.tick();
    assert.equal(k.held.length, 8, 'rounded up');
    demand = 0;
    await k.tick();
    assert.equal(k.held.length, 0, 'released as soon as not needed');
    const other = keeper(store, 'b', { demand: () => 20_000 });
    await other.k.tick();
    assert.equal(other.k.held.length, 20, 'every released partition is free for another process');
    await other.k.stop();
    await store.close();
  });

  it('caps demand at a fair share, and processes together use every partition, uneven ones exactly', async () => {
    const file = freshFile();
    const keepers = ['a', 'b', 'c'].map((owner) => keeper(new SqliteLeaseStore({ file }), owner, { partitions: 7, demand: () => 1_000_000 }).k);
    for (let round = 0; round < 3; round++) for (const k of keepers) await k.tick();
    const counts = keepers.map((k) => k.held.length).sort();
    assert.deepEqual(counts, [2, 2, 3], 'ceil(7 / 3) = 3 at most each, all 7 held');
    assert.equal(keepers.reduce((sum, k) => sum + k.capacity, 0), 20_000, 'their capacities add up to C exactly');
    const partitions = keepers.flatMap((k) => k.held.map((h) => h.partition));
    assert.equal(new Set(partitions).size, 7, 'no partition twice');
    for (const k of keepers) await k.stop();
  });

  it('gives up partitions beyond its fair share when another process starts wanting capacity', async () => {
    const file = freshFile();
    const a = keeper(new SqliteLeaseStore({ file }), 'a', { demand: () => 1_000_000 }).k;
    const b = keeper(new SqliteLeaseStore({ file }), 'b', { demand: () => 1_000_000 }).k;
    await a.tick();
    assert.equal(a.held.length, 20, 'alone, it may use everything');
    await b.tick(); // b announces itself; nothing is free yet
    await a.tick(); // a sees two members and releases half
    await b.tick();
    assert.equal(a.held.length, 10);
    assert.equal(b.held.length, 10);
    await a.stop();
    await b.stop();
  });

  it('runs one round at a time however often it is started', async () => {
    const store = new SqliteLeaseStore({ file: freshFile() });
    let announced = 0;
    let answer!: () => void;
    const held = new Promise<void>((resolve) => (answer = resolve));
    // The first announcement waits: a second start now would begin a second round beside it.
    const slow = new (class extends FlakyStore {
      override async announce(...args: Parameters<LeaseStore['announce']>) {
        announced++;
        await held;
        return super.announce(...args);
      }
    })(store);
    const { k } = keeper(slow, 'a', { demand: () => 5000, tickMs: 60_000 });
    k.start();
    k.start();
    assert.equal(announced, 1);
    answer();
    await k.stop();
    assert.equal(announced, 1, 'one round, no second one started');
    await store.close();
  });

  it('uses its reserved capacity without any lease', async () => {
    const { k } = keeper(new SqliteLeaseStore({ file: freshFile() }), 'a', { reservedCapacity: 500, demand: () => 400 });
    await k.tick();
    assert.equal(k.held.length, 0);
    assert.equal(k.capacity, 500);
    await k.stop();
  });

  it('renews held leases about every third of the TTL while they are needed', async () => {
    const store = new FlakyStore(new SqliteLeaseStore({ file: freshFile() }));
    const { k, clock } = keeper(store, 'a', { demand: () => 3000 });
    await k.tick();
    const validUntil = k.held[0]!.validUntil;
    clock.now += 4000;
    await k.tick();
    assert.equal(store.renewals, 0, 'not yet at TTL/3');
    clock.now += 1500;
    await k.tick();
    assert.equal(store.renewals, 3, 'each of the 3 leases renewed once');
    assert.ok(k.held[0]!.validUntil > validUntil);
    await k.stop();
  });

  it('falls back to its reserved capacity once held leases run out while the store is unreachable', async () => {
    const store = new FlakyStore(new SqliteLeaseStore({ file: freshFile() }));
    const changes: number[] = [];
    const { k, clock } = keeper(store, 'a', { reservedCapacity: 200, demand: () => 5000, onChange: (c) => changes.push(c) });
    await k.tick();
    assert.equal(k.capacity, 200 + 5000);
    store.down = true;
    clock.now += 5000;
    await k.tick();
    assert.equal(k.storeReachable, false);
    assert.equal(k.capacity, 5200, 'leases stay usable until their own validity ends');
    clock.now += 10_000; // past TTL − margin from the acquire
    await k.tick();
    assert.equal(k.capacity, 200, 'reserved capacity alone');
    assert.equal(changes.at(-1), 200, 'the pacer was told');
    store.down = false;
    await k.tick();
    assert.equal(k.capacity, 5200, 'and takes capacity again once the store is back');
    await k.stop();
  });
});
