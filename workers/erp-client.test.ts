// The ERP client against real HTTP servers: the ERP sandbox for what it answers (recorded, again,
// throttled with Retry-After, refused, found), and a plain node:http server for what the sandbox
// never does (an answer with only the standard Retry-After, an oversized answer, more requests at
// once than the pool has places).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Socket, type AddressInfo } from 'node:net';
import { freePort, startProcess, type Proc } from '../harness/process.js';
import { ErpClient, retryAfterMs } from './erp-client.js';

describe('the ERP client against the ERP sandbox', () => {
  let erp: Proc;
  let url: string;
  let dataDir: string;
  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'erp-client-'));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    // Its defaults: orders from throttled.example get a 429 (Retry-After-Ms 200) on their first
    // attempt, from blocked.example a refusal, from unavailable.example a 503.
    erp = await startProcess({ name: 'erp', entry: 'sandbox/erp/main.ts', env: { DATA_DIR: dataDir, HTTP_PORT: String(port), ERP_CAPACITY_RU: '100000' } });
  });
  after(async () => {
    await erp?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('sorts the answers: recorded, recorded again (a duplicate), throttled with the precise Retry-After, refused; and finds what it recorded', async () => {
    const client = new ErpClient(url, 5000, { connections: 2 });
    try {
      const movement = { operationId: 'movement:c-1', kind: 'stock-movement' as const, payload: { importId: 'i', movementId: 'c-1', productId: 'wooden-train', delta: 1 } };
      const first = await client.record(movement);
      assert.equal(first.kind, 'recorded');
      const again = await client.record(movement);
      assert.deepEqual(again, { ...first, duplicate: true });
      const order = (email: string) => ({ operationId: `order:${email.replace("@", "_at_")}`, kind: 'order' as const, payload: { orderId: email, customer: { name: 'C', email }, items: [{ productId: 'wooden-train', quantity: 1 }] } });
      assert.deepEqual(await client.record(order('a@throttled.example')), { kind: 'throttled', retryAfterMs: 200 });
      assert.deepEqual(await client.record(order('b@blocked.example')), { kind: 'refused', reason: 'ERP refused (422): customer failed the credit check' });
      assert.equal((await client.record(order('u@unavailable.example'))).kind, 'unavailable');
      assert.deepEqual(await client.find('movement:c-1'), { reference: (first as { reference: string }).reference });
      assert.equal(await client.find('movement:never'), undefined);
    } finally {
      await client.close();
    }
  });

  it('answers unavailable, never throws, when nothing listens', async () => {
    const client = new ErpClient(`http://127.0.0.1:${await freePort()}`, 2000);
    try {
      const result = await client.record({ operationId: 'movement:x', kind: 'stock-movement', payload: {} });
      assert.equal(result.kind, 'unavailable');
      assert.match((result as { reason: string }).reason, /^ERP unreachable: /);
      assert.equal(await client.find('movement:x'), 'unknown');
    } finally {
      await client.close();
    }
  });
});

describe('the ERP client against answers the sandbox never gives', () => {
  let server: Server;
  let url: string;
  let sockets = new Set<string>();
  let answer: (path: string) => { status: number; headers?: Record<string, string>; body: string };
  before(async () => {
    server = createServer((req, res) => {
      sockets.add(`${req.socket.remotePort}`);
      req.resume();
      req.on('end', () => {
        // Held a moment, so that requests sent together are in progress together.
        setTimeout(() => {
          const a = answer(req.url ?? '');
          res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
          res.end(a.body);
        }, 20);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('keeps to its connection count however many requests are under way', async () => {
    sockets = new Set();
    answer = () => ({ status: 201, body: '{"reference":"ERP-9"}' });
    const client = new ErpClient(url, 5000, { connections: 2 });
    try {
      const results = await Promise.all(Array.from({ length: 40 }, (_, n) => client.record({ operationId: `movement:${n}`, kind: 'stock-movement', payload: {} })));
      assert.ok(results.every((r) => r.kind === 'recorded' && r.reference === 'ERP-9'));
      assert.equal(sockets.size, 2, `${sockets.size} connections`);
      assert.equal(client.connections, 2);
    } finally {
      await client.close();
    }
  });

  it('sends the requests it pipelines on a connection in one turn in one write', async () => {
    answer = () => ({ status: 201, body: '{"reference":"ERP-9"}' });
    const client = new ErpClient(url, 5000, { connections: 2 });
    const { port } = server.address() as AddressInfo;
    const batch = (from: number) => Promise.all(Array.from({ length: 8 }, (_, n) => client.record({ operationId: `movement:w${from + n}`, kind: 'stock-movement', payload: {} })));
    // Every write system call of a socket goes through its _write or _writev; the client's sockets are the ones whose far end is the server.
    const proto = Socket.prototype as unknown as Record<'_write' | '_writev', (this: Socket, ...args: unknown[]) => void>;
    const original = { _write: proto._write, _writev: proto._writev };
    let writes = 0;
    try {
      await batch(0); // both connections open
      for (const name of ['_write', '_writev'] as const) {
        proto[name] = function (this: Socket, ...args: unknown[]) {
          if (this.remotePort === port) writes++;
          return original[name].apply(this, args);
        };
      }
      const results = await batch(8);
      assert.ok(results.every((r) => r.kind === 'recorded'));
      // Four requests on each of the two connections: without the coalescing, eight writes.
      assert.equal(writes, 2, `${writes} writes for 8 requests on 2 connections`);
    } finally {
      Object.assign(proto, original);
      await client.close();
    }
  });

  it('reads the standard Retry-After (seconds) when the precise one is missing', async () => {
    answer = () => ({ status: 429, headers: { 'Retry-After': '2' }, body: '{"title":"Too Many Requests"}' });
    const client = new ErpClient(url);
    try {
      assert.deepEqual(await client.record({ operationId: 'movement:r', kind: 'stock-movement', payload: {} }), { kind: 'throttled', retryAfterMs: 2000 });
    } finally {
      await client.close();
    }
  });

  it('does not read an oversized answer: the call is unavailable, and the client goes on working', async () => {
    let huge = true;
    answer = () => (huge ? { status: 201, body: `{"reference":"${'x'.repeat(200_000)}"}` } : { status: 201, body: '{"reference":"ERP-1"}' });
    const client = new ErpClient(url);
    try {
      const result = await client.record({ operationId: 'movement:h', kind: 'stock-movement', payload: {} });
      assert.equal(result.kind, 'unavailable');
      assert.match((result as { reason: string }).reason, /over 65536 bytes/);
      huge = false;
      assert.deepEqual(await client.record({ operationId: 'movement:h', kind: 'stock-movement', payload: {} }), { kind: 'recorded', reference: 'ERP-1', duplicate: false });
    } finally {
      await client.close();
    }
  });

  it('takes Retry-After as seconds, a date or the precise milliseconds, bounded to a minute, and falls back when it is malformed', () => {
    assert.equal(retryAfterMs({ 'retry-after-ms': '250', 'retry-after': '3' }), 250);
    assert.equal(retryAfterMs({ 'retry-after': '3' }), 3000);
    assert.equal(retryAfterMs({ 'retry-after': '3600' }), 60_000);
    const inFive = retryAfterMs({ 'retry-after': new Date(Date.now() + 5000).toUTCString() });
    assert.ok(inFive > 3000 && inFive <= 5000, `${inFive} ms`);
    assert.equal(retryAfterMs({ 'retry-after': 'soon' }), 1000);
    assert.equal(retryAfterMs({ 'retry-after-ms': '-5' }), 1000);
    assert.equal(retryAfterMs({}, 700), 700);
  });
});
