// An order's Server-Sent Events through real nginx (the repository's nginx.conf) in front of the whole
// system: the stream opened right after POST /api/orders shows pending, then confirmed when the
// saga gets there, with nobody polling; a reconnect with Last-Event-ID gets nothing twice; the
// gateway neither buffers the stream nor lets one client hold more than its connections; the
// orders service ends its streams when it shuts down.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from '../harness/process.js';
import { requireProgram } from './support/programs.js';
import { dataOf, readSse, type SseReader } from './support/sse.js';
import { sampleOrder, startGatewayFor, startStack, type Stack } from '../harness/stack.js';
import type { RunningGateway } from '../gateway/nginx.js';

const skip = requireProgram('nginx', 'nginx');

describe('order event streams through the gateway', { skip }, () => {
  let stack: Stack;
  let gateway: RunningGateway;
  const readers: SseReader[] = [];

  const place = async (n: number) => {
    const res = await fetch(`${gateway.url}/api/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(sampleOrder(n)) });
    assert.equal(res.status, 202);
    return ((await res.json()) as { id: string }).id;
  };
  const follow = async (id: string, headers: Record<string, string> = {}) => {
    const reader = readSse(await fetch(`${gateway.url}/api/orders/${id}/events`, { headers }));
    readers.push(reader);
    return reader;
  };

  before(async () => {
    // Heartbeats every 300 ms, so that a test sees them pass the gateway.
    stack = await startStack({ workers: 1, env: { ORDERS_EVENT_HEARTBEAT_MS: '300' } });
    gateway = await startGatewayFor(stack, { GATEWAY_CONN_PER_IP: '4' });
  });
  after(async () => {
    await Promise.all(readers.map((r) => r.cancel()));
    await gateway?.stop();
    await stack?.stop();
  });

  it('shows pending, then confirmed as it happens, and a reconnect gets nothing twice', async () => {
    // No worker for now: the order stays pending until one comes back, so the stream must deliver
    // pending while it is still open (nginx does not buffer it).
    await stack.proc('worker-1').stop();
    const id = await place(1);
    const sse = await follow(id);
    assert.equal(sse.status, 200);
    assert.match(sse.headers.get('content-type') ?? '', /^text\/event-stream/);
    const [pending] = await sse.waitForEvents(1, 'pending through the gateway');
    assert.deepEqual([pending!.id, JSON.parse(pending!.data).status], ['1', 'pending']);
    // Heartbeats keep the idle stream open through the gateway.
    const beats = sse.comments.length;
    await sse.waitForEvents(1);
    await eventually(() => sse.comments.length > beats, { what: 'a heartbeat through the gateway' });
    assert.equal(sse.isEnded(), false);

    await stack.restart('worker-1');
    await sse.ended;
    assert.deepEqual(dataOf(sse.events).map((d) => [d.seq, d.status]), [
      [1, 'pending'],
      [2, 'confirmed'],
    ]);

    // EventSource reconnects with the last id it saw: nothing is left, so 204 (it stops there).
    const done = await fetch(`${gateway.url}/api/orders/${id}/events`, { headers: { 'last-event-id': '2' } });
    assert.equal(done.status, 204);
    // A client that only saw pending gets confirmed, and pending never again.
    const resumed = await follow(id, { 'last-event-id': '1' });
    await resumed.ended;
    assert.deepEqual(resumed.events.map((e) => [e.id, JSON.parse(e.data).status]), [['2', 'confirmed']]);
  });

  it('counts open streams against the client\'s connections at the gateway', async () => {
    await stack.proc('worker-1').stop();
    // GATEWAY_CONN_PER_IP=4: four pending orders' streams take every place this client has.
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) ids.push(await place(10 + n));
    const open: SseReader[] = [];
    for (const id of ids.slice(0, 4)) {
      const sse = await follow(id);
      await sse.waitForEvents(1);
      open.push(sse);
    }
    const refused = await fetch(`${gateway.url}/api/orders/${ids[4]}/events`);
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get('content-type'), 'application/problem+json');
    await refused.body?.cancel();
    // A place is free again once nginx saw a client go.
    await open[0]!.cancel();
    const fifth = await eventually(
      async () => {
        const res = await fetch(`${gateway.url}/api/orders/${ids[4]}/events`);
        if (res.status === 200) return readSse(res);
        await res.body?.cancel();
        return undefined;
      },
      { what: 'a stream once another was closed' },
    );
    readers.push(fifth);
    await fifth.waitForEvents(1);
    await Promise.all([fifth, ...open].map((r) => r.cancel()));
  });

  it('ends open streams when the orders service shuts down', async () => {
    const sse = await follow(await place(40));
    await sse.waitForEvents(1);
    const code = await stack.proc('orders').stop();
    assert.equal(code, 0);
    await sse.ended;
    assert.deepEqual(dataOf(sse.events).map((d) => d.status), ['pending']);
  });
});
