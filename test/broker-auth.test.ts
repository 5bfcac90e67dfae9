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
import { formatPasswordFile, hashPassword, parsePasswordFile, verifyPassword } from '../broker/password.js';
import { startBroker } from './support/broker.js';
import { requireProgram } from './support/programs.js';

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
  const as = (username: string) => ({ username, clientId: `${username}-1` });
  assert.ok(acl.canPublish(as('orders'), 'woodytoys/orders/created'));
  assert.ok(!acl.canPublish(as('orders'), 'woodytoys/orders/confirmed'));
  assert.ok(acl.canPublish(as('worker'), 'woodytoys/orders/confirmed'));
  assert.ok(acl.canPublish(as('stock'), 'woodytoys/stock/levels/robot-1'));
  for (const user of ['orders', 'stock', 'catalog', 'worker', 'erp']) {
    assert.ok(acl.canPublish(as(user), `woodytoys/deadletter/${user}`), `${user} may dead-letter`);
    assert.ok(acl.canPublish(as(user), 'woodytoys/stats/throughput'), `${user} may publish stats`);
  }
  assert.ok(acl.canSubscribe(as('viewer'), 'woodytoys/#', true));
  for (const topic of ['woodytoys/orders/created', 'woodytoys/stats/x', 'woodytoys/deadletter/worker']) {
    assert.ok(!acl.canPublish(as('viewer'), topic), `viewer may not publish ${topic}`);
  }
  assert.ok(acl.canSubscribe(as('worker'), 'woodytoys/orders/created', true));
  assert.ok(!acl.canSubscribe(as('worker'), 'woodytoys/catalog/#', false));
  assert.ok(acl.canSubscribe(as('worker'), 'woodytoys/#', false), 'granted, filtered per message');
  assert.ok(!acl.canSubscribe(as('worker'), 'woodytoys/#', true), 'not as a shared subscription');
  assert.ok(!acl.canRead(as('worker'), 'woodytoys/catalog/products/x'));
  assert.ok(!acl.canPublish({ username: undefined, clientId: 'x' }, 'woodytoys/orders/created'), 'no rules for anonymous clients');
  assert.ok(!acl.canPublish(as('nobody'), 'woodytoys/orders/created'), 'an unknown user may do nothing');
});

test('deny rules win, patterns expand %u and %c, rules before any user are for anonymous clients', () => {
  const acl = Acl.parse(`
topic read public/#
user alice
topic readwrite a/#
topic deny a/secret
pattern write clients/%c/status
pattern readwrite users/%u/#
`);
  const alice = { username: 'alice', clientId: 'c1' };
  assert.ok(acl.canPublish(alice, 'a/b'));
  assert.ok(!acl.canPublish(alice, 'a/secret'));
  assert.ok(!acl.canRead(alice, 'a/secret'));
  assert.ok(acl.canPublish(alice, 'clients/c1/status'));
  assert.ok(!acl.canPublish(alice, 'clients/c2/status'));
  assert.ok(acl.canPublish(alice, 'users/alice/x'));
  assert.ok(!acl.canPublish(alice, 'users/bob/x'));
  assert.ok(!acl.canRead(alice, 'public/x'));
  const anonymous = { username: undefined, clientId: 'c9' };
  assert.ok(acl.canRead(anonymous, 'public/x'));
  assert.ok(acl.canPublish(anonymous, 'clients/c9/status'));
  assert.throws(() => Acl.parse('frobnicate x'), /line 1/);
});

test('the broker will not start without users unless anonymous clients are allowed', async () => {
  await assert.rejects(startBroker({ env: { BROKER_ALLOW_ANONYMOUS: 'false' } }), /exited with 78[\s\S]*BROKER_PASSWORD_FILE/);
  await assert.rejects(startBroker({ env: { BROKER_INFLIGHT_WINDOW: '0' } }), /exited with 78[\s\S]*BROKER_INFLIGHT_WINDOW/);
});
