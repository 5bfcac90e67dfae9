// The MQTT side of the security model (design.md) against the whole running system: real broker,
// services and workers, and the viewer coming in the way anyone can, through the gateway's /mqtt
// with the login /config.json hands out. While orders flow, no user can take a service's client id
// (each service keeps its one session and every message), the viewer joins no group, and what the
// viewer reads holds no customer name or e-mail.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IClientOptions, MqttClient } from 'mqtt';
import { Acl } from '../broker/acl.js';
import { devCredentials, SERVICE_USERS, type ServiceUser } from '../broker/dev-logins.js';
import { aclFile } from '../broker/mosquitto/run.js';
import type { RunningGateway } from '../gateway/nginx.js';
import { sleep } from '../lib/shutdown.js';
import { PUBLIC_ROOT, orderCreated, orderStatus, publicOrderRef, shareOf, stockReserved } from '../lib/topics.js';
import { grantedQos } from '../harness/broker.js';
import { requireProgram } from './support/programs.js';
import { eventually, type Proc } from '../harness/process.js';
import { getJson, startGatewayFor, startStack, type Stack } from '../harness/stack.js';
import { connectClient } from '../harness/mqtt.js';

interface Order {
  id: string;
  status: 'pending' | 'confirmed' | 'rejected';
}

describe('MQTT access in the running system', { skip: requireProgram('nginx') }, () => {
  let stack: Stack;
  let gateway: RunningGateway;
  let login: { username: string; password: string };
  const open: MqttClient[] = [];
  let n = 0;

  before(async () => {
    stack = await startStack({ workers: 2, stock: { 'wooden-train': 10_000, 'rocking-horse': 0 } });
    const credentials = devCredentials(stack.dataDir);
    gateway = await startGatewayFor(stack, { DASHBOARD_MQTT_USERNAME: 'viewer', DASHBOARD_MQTT_PASSWORD: credentials.viewer });
    login = (await (await fetch(`${gateway.url}/config.json`)).json()) as typeof login;
  });
  after(async () => {
    await Promise.all(open.map((c) => c.endAsync(true)));
    await gateway?.stop();
    await stack?.stop();
  });

  /** The public viewer, as a display connects: over the gateway's WebSocket with the served login. */
  const viewer = async (clientId: string, options: IClientOptions = {}) => {
    const c = await connectClient(`${gateway.url.replace(/^http/, 'ws')}/mqtt`, { ...login, clientId, protocolVersion: 4, reconnectPeriod: 0, ...options });
    open.push(c);
    return c;
  };
  /** CONNACK return code for `user` asking for `clientId` (0: accepted), over TCP or, for the viewer, the gateway. */
  const connack = async (user: ServiceUser, clientId: string, clean: boolean) => {
    try {
      const c =
        user === 'viewer'
          ? await viewer(clientId, { clean })
          : await connectClient(stack.urls.mqtt, { username: user, password: devCredentials(stack.dataDir)[user], clientId, clean, protocolVersion: 4, reconnectPeriod: 0 });
      await c.endAsync(true);
      return 0;
    } catch (err) {
      return (err as { code?: number }).code;
    }
  };
  const order = (customer: { name: string; email: string }, productId = 'wooden-train') =>
    fetch(`${stack.urls.orders}/api/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ customer, items: [{ productId, quantity: 1 }] }),
    }).then(async (r) => {
      assert.equal(r.status, 202);
      return ((await r.json()) as Order).id;
    });
  const settled = (ids: string[]) =>
    eventually(
      async () => {
        const orders = await Promise.all(ids.map((id) => getJson<Order>(`${stack.urls.orders}/api/orders/${id}`)));
        return orders.every((o) => o.status !== 'pending') && orders;
      },
      { what: 'every order settled' },
    );
  /** What a process said about its own MQTT connections: each (re)connect, each loss. */
  const connections = (p: Proc) => ({
    connects: p.logs.filter((l) => l.msg === 'mqtt connected').map((l) => String(l.clientId)),
    offline: p.logs.filter((l) => l.msg === 'mqtt offline, reconnecting').length,
  });

  it("refuses every other user a service's client id, and the services keep their sessions and every message", async () => {
    const procs = [stack.orders, stack.stock, stack.catalog, stack.erp, ...stack.workers];
    const before = procs.map(connections);
    const held = before.flatMap((c) => c.connects);
    assert.ok(held.includes('orders') && held.includes('stock') && held.includes('worker-test-1-o1'), held.join(' '));
    const owner = (id: string) => Acl.read(aclFile).clientIdOwner(id);

    // A run of orders, and meanwhile every other user asks for every id the services hold.
    const ids: Promise<string>[] = [];
    for (let i = 0; i < 30; i++) ids.push(order({ name: `Takeover ${i}`, email: `takeover${i}@example.com` }));
    const attempts: { user: ServiceUser; id: string; code: number | undefined }[] = [];
    for (const id of held) {
      for (const user of SERVICE_USERS.filter((u) => u !== owner(id))) {
        attempts.push({ user, id, code: await connack(user, id, user === 'viewer') });
        if (attempts.length % 8 === 0) ids.push(order({ name: `Takeover ${ids.length}`, email: `takeover${ids.length}@example.com` }));
      }
    }
    assert.deepEqual(attempts.filter((a) => a.code !== 5), [], 'every attempt refused with CONNACK 5');
    const orders = await settled(await Promise.all(ids));
    assert.deepEqual(orders.filter((o) => o.status !== 'confirmed'), [], `all ${orders.length} orders confirmed: every event reached stock, the workers and orders`);
    // Not one service was disconnected meanwhile.
    assert.deepEqual(procs.map(connections), before);
    const refusals = stack.broker.logs.filter((l) => l.msg === 'connection refused' && /belongs to user/.test(String(l.reason)));
    assert.equal(refusals.length, attempts.length, 'one log line per refusal');
  });

  it("joins the viewer to no group, while a worker still joins its own", async () => {
    const groups = Acl.read(aclFile).groupRules;
    assert.ok(groups.length >= 3);
    const display = await viewer(`viewer-groups-${++n}`, { clean: false });
    for (const { group, filter } of groups) {
      assert.equal(await grantedQos(display, shareOf(group, filter)), 128, shareOf(group, filter));
    }
    await eventually(() => stack.broker.logs.some((l) => l.msg === 'subscription refused' && /no "#@ group order-workers …" rule for user viewer/.test(String(l.reason))), {
      what: 'the log line naming the missing rule',
    });
    const worker = await connectClient(stack.urls.mqtt, { username: 'worker', password: devCredentials(stack.dataDir).worker, clientId: 'worker-probe', clean: false, protocolVersion: 4, reconnectPeriod: 0 });
    open.push(worker);
    const share = `$share/order-workers/${stockReserved.topic}`;
    assert.equal(await grantedQos(worker, share), 1, 'a worker joins its group');
    await worker.unsubscribeAsync(share);
  });

  it('shows the viewer every order move through its states, and not one customer name or e-mail', async () => {
    const display = await viewer(`viewer-pii-${++n}`, { clean: true });
    const received: { topic: string; payload: string }[] = [];
    display.on('message', (topic, payload) => received.push({ topic, payload: payload.toString('utf8') }));
    assert.equal(await grantedQos(display, '#'), 1, 'granted: each message is checked against the viewer’s read rules');

    const customers = Array.from({ length: 12 }, (_, i) => ({ name: `Zelda Quixote-${i}`, email: `zelda.q${i}@example.org` }));
    customers.push({ name: 'Blocked Barnaby', email: 'barnaby@blocked.example' }); // the ERP refuses it
    const ids = await Promise.all(customers.map((c) => order(c)));
    const soldOut = { name: 'Soldout Sally', email: 'sally@example.org' };
    customers.push(soldOut);
    ids.push(await order(soldOut, 'rocking-horse')); // stock rejects it
    // A message no consumer can process, with personal data in it: it goes to the dead letters.
    const intruder = await connectClient(stack.urls.mqtt, { clientId: 'pii-probe', clean: true, protocolVersion: 4, reconnectPeriod: 0 });
    open.push(intruder);
    const poison = { name: 'Poison Pete', email: 'pete@example.org' };
    customers.push(poison);
    await intruder.publishAsync(orderCreated.topic, JSON.stringify({ customer: poison }), { qos: 1 });

    const orders = await settled(ids);
    assert.deepEqual(orders.map((o) => o.status).sort(), [...Array(12).fill('confirmed'), 'rejected', 'rejected']);
    await eventually(() => stack.stock.logs.some((l) => l.msg === 'message sent to dead letters'), { what: 'the dead letter' });
    // The displays' view: each order pending, then its outcome, under an anonymous reference.
    const statuses = () =>
      received.filter((m) => m.topic === orderStatus.topic).map((m) => (JSON.parse(m.payload) as { data: { ref: string; status: string } }).data);
    const seen = (ref: string) => statuses().filter((s) => s.ref === ref).map((s) => s.status);
    const expected = orders.map((o) => ({ ref: publicOrderRef(o.id), states: ['pending', o.status] }));
    await eventually(() => expected.every(({ ref, states }) => states.every((state) => seen(ref).includes(state))), { what: 'each order pending, then its outcome, on the public topic' });
    await sleep(500);

    assert.deepEqual(received.filter((m) => !m.topic.startsWith(`${PUBLIC_ROOT}/`)).map((m) => m.topic), [], 'nothing outside the public namespace');
    const all = received.map((m) => `${m.topic} ${m.payload}`).join('\n');
    for (const c of customers) {
      assert.ok(!all.includes(c.name) && !all.includes(c.email), `${c.name} <${c.email}> was published to the viewer`);
    }
    for (const id of ids) assert.ok(!all.includes(id), 'no order id (it opens the order, customer included, on the API)');
    assert.doesNotMatch(all, /@/, 'no e-mail address at all');
    assert.ok(received.some((m) => m.topic.startsWith(`${PUBLIC_ROOT}/stats/`)), 'the live figures are there');
    assert.ok(received.some((m) => m.topic.startsWith(`${PUBLIC_ROOT}/stock/levels/`)), 'the stock levels are there');
  });
});
