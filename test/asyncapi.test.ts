// The AsyncAPI document against the running system, through real nginx: the gateway serves it and
// the AsyncAPI parser accepts it; every message the services publish while an order is confirmed,
// one rejected, one failed, a stock import and a product change go by lies on a documented channel,
// at its QoS, valid against its schema; every subscription the services make is one of their
// user's operations, in the documented shared group; retained channels are the documented ones;
// and the README's display example, reading nothing but the document, runs for real.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import mqtt from 'mqtt';
import { Parser } from '@asyncapi/parser';
import { devCredentials } from '../broker/dev-logins.js';
import { asyncApiFor, type AsyncApiDocument } from '../lib/asyncapi.js';
import { topicMatches } from '../lib/events.js';
import { ROOT, eventually } from '../harness/process.js';
import { payloadValidator } from './support/payloads.js';
import { requireProgram } from './support/programs.js';
import { ADMIN_KEY, sampleOrder, startGatewayFor, startStack, type Stack } from '../harness/stack.js';
import type { RunningGateway } from '../gateway/nginx.js';
import { connectClient } from '../harness/mqtt.js';

const skip = requireProgram('nginx', 'nginx');

interface Seen {
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
}

/** Not an event: what this test publishes to make the stock service dead-letter something. */
const JUNK = 'not json: for the dead letters';

describe('the AsyncAPI document against the running system', { skip }, () => {
  let stack: Stack;
  let gateway: RunningGateway;
  let capture: mqtt.MqttClient;
  let doc: AsyncApiDocument;
  const seen: Seen[] = [];
  /** The document's channels as MQTT filters, with their message and the QoS their publishers use. */
  let channels: { id: string; filter: string; payload: object; qos: number; retain: boolean }[];

  const watch = async (clientId: string, into: Seen[]) => {
    const client = await connectClient(stack.urls.mqtt, { clientId, clean: true, reconnectPeriod: 0 });
    client.on('message', (topic, payload, packet) => into.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain }));
    await client.subscribeAsync('#', { qos: 1 });
    return client;
  };
  const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${gateway.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    assert.equal(res.status, 202, `${path}: ${await res.clone().text()}`);
  };

  before(async () => {
    // Few attempts, so that the order the ERP cannot take is parked soon.
    stack = await startStack({ workers: 1, stock: { 'chess-set': 1 }, workerEnv: { WORKER_MAX_ATTEMPTS: '3' } });
    gateway = await startGatewayFor(stack, { DASHBOARD_MQTT_USERNAME: 'viewer', DASHBOARD_MQTT_PASSWORD: devCredentials(stack.dataDir).viewer });
    // The test's own anonymous client (the stack's broker lets tests probe): everything, at QoS 1 at most.
    capture = await watch('asyncapi-capture', seen);
  });
  after(async () => {
    await capture?.endAsync();
    await gateway?.stop();
    await stack?.stop();
  });

  it('is served through the gateway, valid for the AsyncAPI parser, and the same as generated', async () => {
    const res = await fetch(`${gateway.url}/asyncapi.json`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const text = await res.text();
    const { document, diagnostics } = await new Parser().parse(text);
    assert.ok(document, diagnostics.map((d) => d.message).join('\n'));
    assert.deepEqual(diagnostics, []);
    doc = JSON.parse(text) as AsyncApiDocument;
    assert.deepEqual(doc, asyncApiFor());
    const sends = Object.values(doc.operations).filter((op) => op.action === 'send');
    channels = Object.entries(doc.channels).map(([id, c]) => {
      const send = sends.find((op) => op.channel.$ref === `#/channels/${id}`)!.bindings.mqtt as { qos: number; retain: boolean };
      return { id, filter: c.address.replace(/\{[^}]+\}/g, '+'), payload: doc.components.messages[id]!.payload, ...send };
    });
  });

  it('documents every message the services publish: its channel, its QoS, its schema', async () => {
    assert.ok(doc, 'the first test read the document');
    await post('/api/orders', sampleOrder(1)); // confirmed
    await post('/api/orders', { ...sampleOrder(2), items: [{ productId: 'chess-set', quantity: 5 }] }); // no stock: rejected
    await post('/api/orders', { ...sampleOrder(3), customer: { name: 'Eve', email: 'eve@blocked.example' } }); // the ERP refuses: failed
    await post('/api/orders', { ...sampleOrder(4), customer: { name: 'Una', email: 'una@unavailable.example' } }); // the ERP cannot take it: parked
    await post('/api/stock/imports', [{ productId: 'wooden-train', delta: 5 }, { productId: 'yo-yo', delta: -1 }], { 'x-api-key': ADMIN_KEY });
    const patch = await fetch(`${gateway.url}/api/catalog/products/wooden-train`, { method: 'PATCH', headers: { 'content-type': 'application/json', 'x-api-key': ADMIN_KEY }, body: JSON.stringify({ priceCents: 2990 }) });
    assert.equal(patch.status, 200);
    await capture.publishAsync('woodytoys/orders/created', JUNK, { qos: 1 });

    // Every channel of the document, used for real (stats: every process's, the worker's too).
    const channelOf = (topic: string) => channels.find((c) => topicMatches(c.filter, topic));
    await eventually(() => channels.every((c) => seen.some((s) => s.payload !== JUNK && channelOf(s.topic)?.id === c.id)), {
      what: 'a message on every channel of the document',
      timeoutMs: 60_000,
    }).catch((err: Error) => {
      const used = new Set(seen.map((s) => channelOf(s.topic)?.id));
      throw new Error(`${err.message}; never seen: ${channels.filter((c) => !used.has(c.id)).map((c) => c.id).join(', ')}`);
    });

    const ajv = payloadValidator();
    const validators = new Map(channels.map((c) => [c.id, ajv.compile(c.payload)]));
    const events = seen.filter((s) => s.payload !== JUNK);
    assert.ok(events.length >= 20, `${events.length} messages`);
    for (const s of events) {
      const channel = channelOf(s.topic);
      assert.ok(channel, `${s.topic} is on no channel of the document`);
      const validate = validators.get(channel.id)!;
      assert.ok(validate(JSON.parse(s.payload)), `${s.topic}: ${ajv.errorsText(validate.errors)}\n${s.payload}`);
      assert.equal(s.qos, channel.qos, `${s.topic} at QoS ${s.qos}, documented ${channel.qos}`);
    }
    for (const status of ['confirmed', 'rejected']) {
      assert.ok(events.some((s) => s.topic === 'woodytoys/public/orders/status' && JSON.parse(s.payload).data.status === status), status);
    }
  });

  it('documents every subscription the services make, with its user and shared group', () => {
    const userOf = (proc: string) => (proc.startsWith('worker-') ? 'worker' : proc);
    const subscriptions = [stack.orders, stack.stock, stack.deadletters, ...stack.workers].flatMap((p) =>
      p.logs.filter((l) => l.msg === 'subscribed').flatMap((l) => (l.filters as string[]).map((filter) => ({ user: userOf(p.name), filter }))),
    );
    assert.ok(subscriptions.length >= 10, `${subscriptions.length} subscriptions`);
    for (const { user, filter } of subscriptions) {
      const [, group, plain] = /^\$share\/([^/]+)\/(.+)$/.exec(filter) ?? [undefined, undefined, filter];
      const channel = channels.find((c) => c.filter === plain);
      assert.ok(channel, `${user}'s ${filter} is on no channel`);
      const op = doc.operations[`${user}_receive_${channel.id}`];
      assert.ok(op, `no receive operation of ${user} on ${channel.id}`);
      assert.equal(op['x-shared-subscription']?.group, group, `${user}'s ${filter}`);
    }
  });

  it('retains exactly the documented channels', async () => {
    const fresh: Seen[] = [];
    const client = await watch('asyncapi-retained', fresh);
    try {
      const retained = channels.filter((c) => c.retain);
      await eventually(() => retained.every((c) => fresh.some((s) => s.retain && topicMatches(c.filter, s.topic))), { what: 'a retained message on every retained channel' });
      for (const s of fresh.filter((m) => m.retain)) {
        assert.ok(retained.some((c) => topicMatches(c.filter, s.topic)), `${s.topic} is retained but not documented so`);
      }
    } finally {
      await client.endAsync();
    }
  });

  it("runs the README's display example: the viewer's channels, every message valid", async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/display.ts', gateway.url, '--count', '12'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    // Bounded: the retained levels and products alone are more than enough messages.
    const bound = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(bound);
    assert.equal(code, 0, out);
    const lines = out.split('\n').filter((l) => /^[✓✗] /.test(l));
    assert.equal(lines.length, 12, out);
    assert.ok(lines.every((l) => l.startsWith('✓ woodytoys/public/')), out);
    assert.match(out, /^subscribed as viewer \(viewer-display-[0-9a-f]+\)/m);
  });
});
