// The Redis group store against a real redis-server, with two store instances standing for two
// broker nodes: routing by topic (the Lua matcher agrees with matchesFilter), each entry to one
// member, acknowledgements, what a member holds across connections, claims of a departed member's
// entries (and none of what a member still holds), a member that leaves, the last member's
// departure, and notices of new entries to every node.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { eventually } from '../harness/process.js';
import { sleep } from '../lib/shutdown.js';
import { startRedis, type RunningRedis } from '../harness/redis.js';
import { requireProgram } from '../test/support/programs.js';
import { encodePublish } from './publish-packet.js';
import { matchesFilter } from './persistence.js';
import { parseNotice, RedisGroupStore } from './redis-group-store.js';

/** Idle time after which entries are claimable, in the claim cases: far above two Redis calls' time. */
const IDLE_MS = 1000;
const packet = (topic: string, body: string) => encodePublish(topic, Buffer.from(body), 1);
const bodies = (entries: { packet: Buffer }[]) => entries.map((e) => e.packet.subarray(e.packet.length - 2).toString());

describe('Redis group store', { skip: requireProgram('redis-server', 'redis-server') }, () => {
  let redis: RunningRedis;
  const stores: RedisGroupStore[] = [];
  /** Two nodes' stores on a key prefix of their own. */
  const nodes = async () => {
    const prefix = `test:${randomUUID().slice(0, 8)}:`;
    const pair = [new RedisGroupStore({ url: redis.url, prefix }), new RedisGroupStore({ url: redis.url, prefix })] as const;
    stores.push(...pair);
    await Promise.all(pair.map((s) => s.ready()));
    return pair;
  };

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await redis?.stop();
  });

  test('a publish goes to every group whose filter matches its topic, as matchesFilter says', async () => {
    const [a] = await nodes();
    const filters = ['w/+/x', 'w/#', '#', '+/+', 'w/a', 'w/+', '$SYS/#', '+/b/#', 'w//x', 'w/a%/.*'];
    for (const [i, f] of filters.entries()) await a.join(`$share/g${i}/${f}`, `c${i}`);
    const topics = ['w/a/x', 'w', 'w/a', 'w/a/b', '$SYS/x', 'a/b', 'a/b/c/d', 'w//x', 'w/a%/.*', 'w/a%/x'];
    const routed = await a.route(topics.map((t) => ({ topic: t, packet: packet(t, '00') })));
    for (const [i, topic] of topics.entries()) {
      const expected = filters.flatMap((f, j) => (matchesFilter(f, topic) ? [`$share/g${j}/${f}`] : []));
      assert.deepEqual(routed[i]!.sort(), expected.sort(), topic);
    }
  });

  test('each entry goes to one member, whichever node reads it; acknowledged entries are gone', async () => {
    const [a, b] = await nodes();
    const share = '$share/workers/orders/#';
    await a.join(share, 'm1');
    await b.join(share, 'm2');
    await a.route(Array.from({ length: 10 }, (_, i) => ({ topic: 'orders/x', packet: packet('orders/x', String(i).padStart(2, '0')) })));
    const first = await a.take(share, 'm1', 4);
    const second = await b.take(share, 'm2', 100);
    assert.equal(first.length, 4, 'no more than asked');
    assert.deepEqual([...bodies(first), ...bodies(second)].sort(), Array.from({ length: 10 }, (_, i) => String(i).padStart(2, '0')));
    assert.deepEqual(await a.take(share, 'm1', 10), [], 'nothing is handed out twice');
    assert.deepEqual(await a.depth(share), { stored: 10, held: 10 });
    a.ack(share, first.map((e) => e.id));
    b.ack(share, second.map((e) => e.id));
    await eventually(async () => (await a.depth(share)).stored === 0, { what: 'the acknowledged entries gone' });
    assert.deepEqual(await a.depth(share), { stored: 0, held: 0 });
  });

  test('what a member held comes back to it on any node, until another member claims it', async () => {
    const [a, b] = await nodes();
    const share = '$share/g/t';
    await a.join(share, 'm1');
    await a.join(share, 'm2');
    await a.route([{ topic: 't', packet: packet('t', '01') }]);
    assert.deepEqual(bodies(await a.take(share, 'm1', 5)), ['01']);
    // m1 reconnects on node b: its entry is there.
    const held = await b.held(share, 'm1');
    assert.deepEqual(bodies(held), ['01']);
    // Left untouched past the idle time, then renewed by m1's node: not claimable.
    const since = Date.now();
    await sleep(IDLE_MS + 100);
    assert.ok(Date.now() - since > IDLE_MS);
    await b.keep(share, 'm1', held.map((e) => e.id));
    assert.deepEqual(await a.claim(share, 'm2', IDLE_MS, 5), [], 'a member still holding it keeps it');
    // Untouched past the idle time: m2 claims it, and m1 no longer holds it.
    await eventually(async () => (await a.claim(share, 'm2', IDLE_MS, 5)).length === 1, { what: 'the claim', intervalMs: 100 });
    assert.deepEqual(await b.held(share, 'm1'), []);
    // m1's node renewing what it thought m1 held does not take it back.
    await b.keep(share, 'm1', ['0-1']);
    assert.deepEqual(bodies(await a.held(share, 'm2')), ['01']);
  });

  test('a member that leaves hands what it held to the others at once; the last one takes the queue along', async () => {
    const [a, b] = await nodes();
    const share = '$share/g/t';
    await a.join(share, 'm1');
    await b.join(share, 'm2');
    await a.route([{ topic: 't', packet: packet('t', '01') }, { topic: 't', packet: packet('t', '02') }]);
    assert.equal((await a.take(share, 'm1', 5)).length, 2);
    await b.join(share, '~departed');
    await a.leave(share, 'm1');
    assert.deepEqual(await a.memberships('m1'), []);
    assert.deepEqual(await b.held(share, '~departed'), [], 'a client id cannot name the place where they are parked');
    assert.deepEqual(bodies(await b.claim(share, 'm2', 60_000, 5)).sort(), ['01', '02'], 'claimable without waiting');
    await b.leave(share, 'm2');
    await b.leave(share, '~departed');
    assert.deepEqual(await a.route([{ topic: 't', packet: packet('t', '03') }]), [[]], 'no group any more');
    assert.deepEqual(await a.depth(share), { stored: 0, held: 0 });
    assert.deepEqual(await b.take(share, 'm2', 5), []);
  });

  test('messages wait while no member reads; every node hears of new entries', async () => {
    const [a, b] = await nodes();
    const heard: string[][] = [];
    b.onAppended((shares) => heard.push(shares));
    const share = '$share/g\nweird %s/t';
    await a.join(share, 'm1');
    assert.deepEqual(await a.memberships('m1'), [share]);
    await a.route([{ topic: 't', packet: packet('t', '01') }, { topic: 'u', packet: packet('u', '02') }]);
    await eventually(() => heard.length === 1, { what: 'the notice' });
    assert.deepEqual(heard, [[share]]);
    assert.deepEqual(bodies(await b.take(share, 'm1', 5)), ['01']);
  });

  test('notices: anything but a JSON array of strings is ignored', () => {
    assert.deepEqual(parseNotice('["$share/a/b"]'), ['$share/a/b']);
    for (const bad of ['', 'x', '{}', '[1]', 'null', '"a"']) assert.equal(parseNotice(bad), undefined, bad);
  });
});
