// Both lease-store backends against the real thing: SQLite files shared by several processes, and a
// real redis-server started here. Mutual exclusion under contention, expiry, renewal, release,
// stale tokens and fencing epochs. Run as a child with LEASE_CONTENDER set, this file is one of the
// contending processes instead.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { RedisLeaseStore } from '../lib/leases/redis.js';
import { SqliteLeaseStore } from '../lib/leases/sqlite.js';
import type { LeaseStore } from '../lib/leases/store.js';
import { eventually } from '../harness/process.js';
import { requireProgram } from './support/programs.js';
import { startRedis, type RunningRedis } from '../harness/redis.js';
import { sleep } from '../lib/shutdown.js';


function openStore(spec: string): LeaseStore {
  return spec.startsWith('redis://') ? new RedisLeaseStore({ url: spec }) : new SqliteLeaseStore({ file: spec });
}

interface Hold {
  owner: string;
  partition: number;
  epoch: number;
  start: number;
  end: number;
}

// A contending process: grabs random partitions among a few for a while, "works" in each briefly,
// and reports every hold with the shared host clock; exclusion means holds of a partition never overlap.
if (process.env.LEASE_CONTENDER) {
  const { LEASE_CONTENDER: owner, LEASE_STORE_SPEC: spec, LEASE_PARTITIONS: count, LEASE_ROUNDS: rounds } = process.env;
  const store = openStore(spec!);
  if (store instanceof RedisLeaseStore) await store.ready();
  const holds: Hold[] = [];
  let attempts = 0;
  while (holds.length < Number(rounds) && attempts < 20_000) {
    attempts++;
    const partition = 100 + Math.floor(Math.random() * Number(count));
    const grant = await store.acquire(partition, owner!, 10_000).catch(() => undefined);
    if (!grant) continue;
    const start = performance.timeOrigin + performance.now();
    await sleep(1 + Math.random() * 3);
    const end = performance.timeOrigin + performance.now();
    assert.ok(await store.release(grant), 'releasing a held lease succeeds');
    holds.push({ owner: owner!, partition, epoch: grant.epoch, start, end });
  }
  await store.close();
  process.stdout.write(JSON.stringify(holds));
  process.exit(0);
}

async function contend(spec: string, processes: number, partitions: number, rounds: number): Promise<Hold[]> {
  const file = fileURLToPath(import.meta.url);
  const children: ChildProcess[] = [];
  const outputs = await Promise.all(
    Array.from({ length: processes }, async (_, i) => {
      const child = spawn(process.execPath, ['--import', 'tsx', file], {
        env: { ...process.env, LEASE_CONTENDER: `contender-${i}`, LEASE_STORE_SPEC: spec, LEASE_PARTITIONS: String(partitions), LEASE_ROUNDS: String(rounds) },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.push(child);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      const [code] = await once(child, 'exit');
      assert.equal(code, 0, `contender-${i} exited with ${code}`);
      return JSON.parse(out) as Hold[];
    }),
  );
  return outputs.flat();
}

function storeContract(name: string, spec: () => string, skip: string | false = false) {
  describe(`${name} lease store`, { skip }, () => {
    let a: LeaseStore;
    let b: LeaseStore;
    before(async () => {
      a = openStore(spec());
      b = openStore(spec());
      for (const s of [a, b]) if (s instanceof RedisLeaseStore) await s.ready();
    });
    after(async () => {
      await a?.close();
      await b?.close();
    });

    it('grants a partition to one owner at a time, with a higher epoch on every acquire', async () => {
      const first = await a.acquire(0, 'a', 10_000);
      assert.ok(first);
      assert.equal(await b.acquire(0, 'b', 10_000), undefined, 'a held partition is refused');
      assert.ok(await b.acquire(1, 'b', 10_000), 'another partition is free');
      assert.ok(await a.release(first));
      const second = await b.acquire(0, 'b', 10_000);
      assert.ok(second, 'a released partition is free at once');
      assert.ok(second.epoch > first.epoch, `epoch ${second.epoch} > ${first.epoch}`);
      assert.notEqual(second.token, first.token);
    });

    it('lets a lease expire by the store clock, and refuses the stale token afterwards', async () => {
      const old = await a.acquire(2, 'a', 150);
      assert.ok(old);
      assert.equal(await b.acquire(2, 'b', 10_000), undefined);
      const taken = await eventually(() => b.acquire(2, 'b', 10_000), { what: 'the lease to expire', intervalMs: 50, timeoutMs: 5000 });
      assert.ok(taken.epoch > old.epoch, 'the new holder has a higher fencing epoch');
      assert.equal(await a.renew(old, 10_000), false, 'the old holder cannot renew');
      assert.equal(await a.release(old), false, 'the old holder cannot release');
      assert.equal(await a.acquire(2, 'a', 10_000), undefined, 'the new holder still holds it');
    });

    it('keeps a renewed lease past its first expiry', async () => {
      // Renewed every 250 ms with a 3 s lease, until well past when it would have expired: a lapse
      // needs the test to stall for over 2.7 s (a loaded CI machine stalls for hundreds of ms).
      const ttlMs = 3000;
      const acquiredAt = Date.now();
      const grant = await a.acquire(3, 'a', ttlMs);
      assert.ok(grant);
      for (let i = 1; Date.now() - acquiredAt < ttlMs * 1.5; i++) {
        await sleep(250);
        assert.ok(await a.renew(grant, ttlMs), `renewal ${i}`);
      }
      // Past the first expiry: without the renewals it would have expired.
      assert.equal(await b.acquire(3, 'b', 10_000), undefined);
      assert.ok(await a.release(grant));
      assert.equal(await a.renew(grant, ttlMs), false, 'a released lease cannot be renewed');
    });

    it('lists the owners that want capacity, and how much, until they withdraw or lapse', async () => {
      assert.deepEqual(await a.announce('a', 5, 10_000), [{ owner: 'a', wanted: 5 }]);
      assert.deepEqual(await b.announce('b', 7, 10_000), [
        { owner: 'a', wanted: 5 },
        { owner: 'b', wanted: 7 },
      ]);
      await b.withdraw('b');
      assert.deepEqual(await a.announce('a', 3, 10_000), [{ owner: 'a', wanted: 3 }]);
      assert.equal((await b.announce('b', 1, 100)).length, 2);
      await eventually(async () => (await a.announce('a', 3, 10_000)).length === 1, { what: 'b to lapse', intervalMs: 50, timeoutMs: 5000 });
      await a.withdraw('a');
    });

    it('never lets two processes hold the same partition at once under contention', async () => {
      const holds = await contend(spec(), 4, 3, 40);
      assert.equal(holds.length, 160);
      for (let p = 100; p < 103; p++) {
        const mine = holds.filter((h) => h.partition === p).sort((x, y) => x.epoch - y.epoch);
        const epochs = new Set(mine.map((h) => h.epoch));
        assert.equal(epochs.size, mine.length, `partition ${p}: every acquire has its own epoch`);
        for (let i = 1; i < mine.length; i++) {
          assert.ok(mine[i]!.start >= mine[i - 1]!.end, `partition ${p}: epoch ${mine[i]!.epoch} began before epoch ${mine[i - 1]!.epoch} ended`);
        }
      }
      assert.ok(new Set(holds.map((h) => h.owner)).size > 1, 'more than one process won leases');
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'leases-'));
after(() => rmSync(dir, { recursive: true, force: true }));
storeContract('SQLite', () => join(dir, 'leases.db'));

const redisSkip = requireProgram('redis-server', 'redis-server');
let redis: RunningRedis | undefined;
before(async () => {
  if (!redisSkip) redis = await startRedis({ appendonly: false });
});
after(() => redis?.kill());
storeContract('Redis', () => redis!.url, redisSkip);
