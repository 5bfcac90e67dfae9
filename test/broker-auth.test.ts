// Passwords and ACL rules in Mosquitto's formats: what our broker accepts must match what
// mosquitto_passwd writes and what the repo's ACL file means.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Acl, filterCovers, filtersIntersect } from '../broker/acl.js';
import { aclFile } from '../broker/mosquitto/run.js';
import { stockSubscriptions } from '../api/stock/consumers.js';
import { statsTopic } from '../lib/stats.js';
import { PUBLIC_ROOT, orderConfirmed, orderCreated, orderFailed, orderStatus, productTopic, stockLevelTopic, stockMovement, stockRejected, stockReserved } from '../lib/topics.js';
import { formatPasswordFile, hashPassword, parsePasswordFile, verifyPassword } from '../broker/password-hash.js';
import { startBroker } from '../harness/broker.js';
import { requireProgram } from './support/programs.js';

/** A client of `username` with one of its own client ids. */
const as = (username: string) => ({ username, clientId: `${username}-1` });

test('a hashed password verifies, a wrong one does not', () => {
  const encoded = hashPassword('s3cret');
  assert.match(encoded, /^\$7\$101\$[A-Za-z0-9+/=]{16}\$[A-Za-z0-9+/=]{88}$/);
  assert.ok(verifyPassword('s3cret', encoded));
  assert.ok(!verifyPassword('S3cret', encoded));
  assert.ok(!verifyPassword('s3cret', 'garbage'));
  const users = parsePasswordFile(formatPasswordFile({ orders: 'a', viewer: 'b' }));
  assert.deepEqual([...users.keys()], ['orders', 'viewer']);
  assert.ok(verifyPassword('b', users.get('viewer')!));
});

test('passwords written by mosquitto_passwd verify', { skip: requireProgram('mosquitto_passwd', 'mosquitto') }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'passwd-'));
  try {
    const file = join(dir, 'passwd');
    execFileSync('mosquitto_passwd', ['-c', '-b', file, 'worker', 'p@ss word']);
    const users = parsePasswordFile(readFileSync(file, 'utf8'));
    assert.ok(verifyPassword('p@ss word', users.get('worker')!));
    assert.ok(!verifyPassword('p@ss', users.get('worker')!));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('filter coverage and intersection', () => {
  assert.ok(filterCovers('woodytoys/#', 'woodytoys/orders/+'));
  assert.ok(filterCovers('woodytoys/+/created', 'woodytoys/orders/created'));
  assert.ok(!filterCovers('woodytoys/orders/#', 'woodytoys/#'));
  assert.ok(!filterCovers('woodytoys/+', 'woodytoys/#'));
  assert.ok(filtersIntersect('woodytoys/orders/#', 'woodytoys/#'));
  assert.ok(filtersIntersect('woodytoys/+/created', 'woodytoys/orders/#'));
  assert.ok(filtersIntersect('a/#', 'a'));
  assert.ok(!filtersIntersect('woodytoys/catalog/#', 'woodytoys/orders/#'));
});

test("the repo's ACL: services, the worker and the read-only viewer", () => {
  const acl = Acl.read(aclFile);
  assert.ok(acl.canPublish(as('orders'), 'woodytoys/orders/created'));
  assert.ok(!acl.canPublish(as('orders'), 'woodytoys/orders/confirmed'));
  assert.ok(acl.canPublish(as('worker'), 'woodytoys/orders/confirmed'));
  assert.ok(acl.canPublish(as('stock'), stockLevelTopic('robot-1')));
  assert.ok(acl.canPublish(as('catalog'), productTopic('robot-1')));
  for (const user of ['orders', 'stock', 'catalog', 'worker']) {
    assert.ok(acl.canPublish(as(user), `woodytoys/deadletter/${user}`), `${user} may dead-letter`);
  }
  assert.ok(acl.canPublish(as('orders'), statsTopic('orders')));
  assert.ok(acl.canPublish(as('worker'), statsTopic('workers/worker-a')));
  assert.ok(acl.canPublish(as('erp'), statsTopic('erp')));
  assert.ok(!acl.canPublish(as('erp'), statsTopic('orders')), 'each its own figures');
  // The viewer reads the public namespace, and nothing else.
  assert.ok(acl.canSubscribe(as('viewer'), `${PUBLIC_ROOT}/#`, true));
  assert.ok(acl.canSubscribe(as('viewer'), '#', false), 'granted, filtered per message');
  for (const topic of [orderStatus.topic, stockLevelTopic('x'), productTopic('x'), statsTopic('orders')]) assert.ok(acl.canRead(as('viewer'), topic), topic);
  for (const topic of [orderCreated.topic, stockReserved.topic, stockRejected.topic, orderConfirmed.topic, orderFailed.topic, stockMovement.topic, 'woodytoys/deadletter/stock']) {
    assert.ok(!acl.canRead(as('viewer'), topic), `viewer may not read ${topic}`);
  }
  for (const topic of [orderCreated.topic, statsTopic('x'), 'woodytoys/deadletter/worker']) {
    assert.ok(!acl.canPublish(as('viewer'), topic), `viewer may not publish ${topic}`);
  }
  // Dead letters: published by the services and workers, read by the dead-letter service alone.
  const users = ['orders', 'stock', 'catalog', 'worker', 'deadletters', 'erp', 'viewer'];
  assert.deepEqual(users.filter((u) => acl.canRead(as(u), 'woodytoys/deadletter/stock')), ['deadletters']);
  assert.deepEqual(users.filter((u) => acl.canPublish(as(u), 'woodytoys/deadletter/stock')), ['orders', 'stock', 'catalog', 'worker', 'deadletters']);
  assert.ok(acl.canSubscribe(as('deadletters'), 'woodytoys/deadletter/+', true));
  // Customer data is read by those who need it only.
  const readers = (topic: string) => ['orders', 'stock', 'catalog', 'worker', 'erp', 'viewer'].filter((u) => acl.canRead(as(u), topic));
  assert.deepEqual(readers(orderCreated.topic), ['stock']);
  assert.deepEqual(readers(stockReserved.topic), ['worker']);
  assert.ok(acl.canSubscribe(as('worker'), stockReserved.topic, true));
  assert.ok(!acl.canSubscribe(as('worker'), 'woodytoys/public/catalog/#', false));
  assert.ok(acl.canSubscribe(as('worker'), 'woodytoys/#', false), 'granted, filtered per message');
  assert.ok(!acl.canSubscribe(as('worker'), 'woodytoys/#', true), 'not as a shared subscription');
  assert.ok(!acl.canPublish({ username: undefined, clientId: 'x' }, 'woodytoys/orders/created'), 'no rules for anonymous clients');
  assert.ok(!acl.canPublish(as('nobody'), 'woodytoys/orders/created'), 'an unknown user may do nothing');
});

test("the repo's ACL: each user's client ids, and who joins which group", () => {
  const acl = Acl.read(aclFile);
  for (const user of ['orders', 'stock', 'catalog', 'worker', 'erp', 'viewer']) {
    for (const id of [user, `${user}-pub`, `${user}-1-o1`]) assert.equal(acl.clientIdRefusal(user, id), undefined, `${user} may use ${id}`);
  }
  assert.equal(acl.clientIdRefusal('viewer', 'orders'), 'client id orders belongs to user orders');
  assert.equal(acl.clientIdRefusal('worker', 'stock-pub'), 'client id stock-pub belongs to user stock');
  assert.match(acl.clientIdRefusal('viewer', 'dashboard-1')!, /not one of user viewer's \(viewer, viewer-\*\)/);
  assert.match(acl.clientIdRefusal('nobody', 'x')!, /no "#@ clientid" rule/);
  // Every group our processes join, and nobody else's.
  const groups = acl.groupRules.map((r) => `${r.user} ${r.group} ${r.filter}`);
  assert.deepEqual(groups.sort(), [
    'deadletters deadletters woodytoys/deadletter/+',
    'stock stock woodytoys/orders/#',
    'stock stock woodytoys/public/catalog/products/+',
    'stock stock woodytoys/stock/movements/processed',
    'worker order-workers woodytoys/stock/reserved',
    'worker stock-workers woodytoys/stock/movements',
  ]);
  for (const share of stockSubscriptions) {
    const [, group, ...filter] = share.split('/');
    assert.equal(acl.groupRefusal(as('stock'), group!, filter.join('/')), undefined, share);
  }
  assert.equal(acl.groupRefusal(as('worker'), 'order-workers', stockReserved.topic), undefined);
  assert.match(acl.groupRefusal(as('viewer'), 'order-workers', stockReserved.topic)!, /no "#@ group order-workers …" rule for user viewer/);
  assert.match(acl.groupRefusal(as('worker'), 'order-workers', 'woodytoys/stock/movements')!, /cover woodytoys\/stock\/reserved, not woodytoys\/stock\/movements/);
  assert.match(acl.groupRefusal(as('worker'), 'stock', orderCreated.topic)!, /no "#@ group stock …" rule for user worker/);
});

test('client-id and group rules: exact names and prefixes, one owner per client id, always under a user', () => {
  const acl = Acl.parse(`
user alice
#@ clientid alice alice-*
#@ group team-* jobs/#
topic read jobs/#
user bob
#@ clientid bob-1
`);
  assert.equal(acl.clientIdRefusal('alice', 'alice-x'), undefined);
  assert.equal(acl.clientIdRefusal('alice', 'alice'), undefined);
  assert.equal(acl.clientIdRefusal('bob', 'bob-1'), undefined);
  assert.match(acl.clientIdRefusal('bob', 'bob-2')!, /not one of user bob's \(bob-1\)/);
  assert.match(acl.clientIdRefusal('bob', 'alice-2')!, /belongs to user alice/);
  assert.equal(acl.groupRefusal(as('alice'), 'team-a', 'jobs/x'), undefined);
  assert.match(acl.groupRefusal(as('alice'), 'team-a', 'other')!, /cover jobs\/#, not other/);
  assert.match(acl.groupRefusal(as('bob'), 'team-a', 'jobs/x')!, /no "#@ group team-a …" rule for user bob/);
  assert.throws(() => Acl.parse('user a\n#@ clientid x-*\nuser b\n#@ clientid x-1'), /x-\* of user a overlaps x-1 of user b/);
  assert.throws(() => Acl.parse('user a\n#@ clientid ab*\nuser b\n#@ clientid a*'), /belongs to one user/);
  assert.throws(() => Acl.parse('#@ clientid x'), /line 1: client-id, group, queue, sessions and filters rules belong to a user/);
  assert.throws(() => Acl.parse('user a\n#@ clientid a*b'), /line 2: a name is exact or a prefix ending in \*/);
  assert.throws(() => Acl.parse('user a\n#@ group g'), /line 2: expected/);
});

test('queue rules: a bound per user, a whole number, once; none means no bound', () => {
  const acl = Acl.parse('user a\n#@ clientid a\n#@ queue 25\nuser b\n');
  assert.equal(acl.queueLimit('a'), 25);
  assert.equal(acl.queueLimit('b'), undefined);
  assert.equal(Acl.read(aclFile).queueLimit('viewer'), 1000, 'the repository ACL bounds the public login');
  assert.equal(Acl.read(aclFile).queueLimit('orders'), undefined, 'and no service');
  assert.throws(() => Acl.parse('#@ queue 5'), /line 1: client-id, group, queue, sessions and filters rules belong to a user/);
  for (const bad of ['0', '-1', '1.5', 'lots', '10000000', '5 6', '']) assert.throws(() => Acl.parse(`user a\n#@ queue ${bad}`), /line 2: expected "#@ queue <messages>"/, bad);
  assert.throws(() => Acl.parse('user a\n#@ queue 5\nuser a\n#@ queue 6'), /line 4: user a has a queue rule already/);
});

test('sessions rules: a bound per user, once; a bounded user needs a client-id rule and may join no group', () => {
  const acl = Acl.parse('user a\n#@ clientid a-*\n#@ sessions 3\nuser b\n#@ clientid b\n');
  assert.equal(acl.sessionLimit('a'), 3);
  assert.equal(acl.sessionLimit('b'), undefined);
  assert.equal(Acl.read(aclFile).sessionLimit('viewer'), 100, 'the repository ACL bounds the public login');
  for (const service of ['orders', 'stock', 'catalog', 'worker', 'deadletters', 'erp']) assert.equal(Acl.read(aclFile).sessionLimit(service), undefined, service);
  assert.throws(() => Acl.parse('#@ sessions 5'), /line 1: client-id, group, queue, sessions and filters rules belong to a user/);
  for (const bad of ['0', '-1', '2.5', 'many', '1000000', '5 6', '']) assert.throws(() => Acl.parse(`user a\n#@ clientid a\n#@ sessions ${bad}`), /line 3: expected "#@ sessions <n>", a whole number from 1 to 999999/, bad);
  assert.throws(() => Acl.parse('user a\n#@ clientid a\n#@ sessions 5\n#@ sessions 6'), /line 4: user a has a sessions rule already/);
  // Without a client-id rule the user can keep no session: a bound there is a mistake, said at start.
  assert.throws(() => Acl.parse('user a\n#@ queue 5\nuser b\n#@ clientid b'), /line 2: user a has a queue or sessions bound but no "#@ clientid" rule/);
  assert.throws(() => Acl.parse('user a\n#@ sessions 5\ntopic read x'), /line 2: user a has a queue or sessions bound but no "#@ clientid" rule/);
  // Filters are per connection: any user may have the bound, a service too.
  assert.equal(Acl.parse('user a\n#@ filters 7\n#@ group g x/#').filterLimit('a'), 7);
  assert.equal(Acl.read(aclFile).filterLimit('viewer'), 100, 'the repository ACL bounds the public login');
  assert.equal(Acl.read(aclFile).filterLimit('stock'), undefined);
  for (const bad of ['0', '1000000', 'x']) assert.throws(() => Acl.parse(`user a\n#@ filters ${bad}`), /line 2: expected "#@ filters <n>", a whole number from 1 to 999999/, bad);
  // A group member's session carries a workflow: bounding it would lose or refuse the group's work.
  assert.throws(() => Acl.parse('user a\n#@ clientid a\n#@ sessions 5\n#@ group g x/#\ntopic read x/#'), /line 3: user a has a queue or sessions bound and group rules/);
});

test('the broker will not start without users unless anonymous clients are allowed', async () => {
  await assert.rejects(startBroker({ env: { BROKER_ALLOW_ANONYMOUS: 'false' } }), /exited with 78[\s\S]*BROKER_PASSWORD_FILE/);
  await assert.rejects(startBroker({ env: { BROKER_INFLIGHT_WINDOW: '0' } }), /exited with 78[\s\S]*BROKER_INFLIGHT_WINDOW/);
  for (const bad of ['-1', '16MiB']) {
    await assert.rejects(startBroker({ env: { BROKER_MEMORY_TRIM_BYTES: bad } }), /exited with 78[\s\S]*BROKER_MEMORY_TRIM_BYTES/);
  }
  // 0 turns the trimming off; the broker runs as usual.
  const untrimmed = await startBroker({ env: { BROKER_MEMORY_TRIM_BYTES: '0' } });
  try {
    assert.equal((await fetch(`${untrimmed.httpUrl}/healthz`)).status, 200);
  } finally {
    await untrimmed.stop();
  }
});

test('the broker will not start on Redis without a Redis URL, or with a bad store or node id', async () => {
  await assert.rejects(startBroker({ env: { BROKER_STORE: 'redis' } }), /exited with 78[\s\S]*BROKER_STORE=redis needs BROKER_REDIS_URL/);
  await assert.rejects(startBroker({ env: { BROKER_STORE: 'memory' } }), /exited with 78[\s\S]*BROKER_STORE/);
  await assert.rejects(startBroker({ env: { BROKER_STORE: 'redis', BROKER_REDIS_URL: 'http://127.0.0.1:1' } }), /exited with 78[\s\S]*BROKER_REDIS_URL/);
  await assert.rejects(startBroker({ env: { BROKER_NODE_ID: 'node:1' } }), /exited with 78[\s\S]*BROKER_NODE_ID/);
});
