// lib/http.ts serving a real socket: an answer given before the request body was read (a 413)
// reaches every client, and the connection is then reused or closed cleanly, within the limits.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createApp, KEEP_ALIVE_TIMEOUT_MS, limitBody, serveApp, type Served } from './http.js';
import { createLogger } from './log.js';
import { createMetrics } from './metrics.js';
import { Connection } from '../test/support/raw-http.js';

const LIMIT = 16 * 1024;
const BIG = 2_400_000;

function testApp() {
  const app = createApp({ log: createLogger('http-test', 'silent'), metrics: createMetrics('http-test'), ready: () => ({}) });
  app.use('/upload', limitBody(LIMIT));
  app.post('/upload', async (c) => c.json({ bytes: (await c.req.arrayBuffer()).byteLength }));
  app.get('/ping', (c) => c.json({ ok: true }));
  return app;
}

const upload = (length: number, extra = '') => `POST /upload HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n${extra}\r\n`;

describe('an answer before the body was read (lingering close)', () => {
  let served: Served;
  let limited: Served;
  before(async () => {
    served = await serveApp(testApp(), 0, '127.0.0.1');
    limited = await serveApp(testApp(), 0, '127.0.0.1', { linger: { maxBytes: 1024 * 1024, maxMs: 10_000, idleMs: 300 } });
  });
  after(async () => {
    await served.close();
    await limited.close();
  });

  test('a client that sends its whole body before reading gets the 413, and the connection serves the next request', async () => {
    for (let i = 0; i < 20; i++) {
      const conn = await Connection.open(served.port);
      await conn.write(upload(BIG));
      await conn.write(Buffer.alloc(BIG, 'x'));
      const answer = await conn.answer();
      assert.equal(answer.status, 413);
      assert.equal(answer.headers['content-type'], 'application/problem+json');
      assert.match(answer.body, /exceeds 16384 bytes/);
      assert.equal(answer.headers.connection, 'keep-alive');
      await conn.write('GET /ping HTTP/1.1\r\nhost: test\r\n\r\n');
      assert.equal((await conn.answer()).status, 200, 'the body was read to its end: the connection is clean');
      conn.socket.destroy();
    }
  });

  test('the same for a chunked body, read in part by the limit before it gave up', async () => {
    const conn = await Connection.open(served.port);
    await conn.write('POST /upload HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
    for (let sent = 0; sent < BIG; sent += 64 * 1024) await conn.write(`10000\r\n${'x'.repeat(64 * 1024)}\r\n`);
    await conn.write('0\r\n\r\n');
    assert.equal((await conn.answer()).status, 413);
    await conn.write('GET /ping HTTP/1.1\r\nhost: test\r\n\r\n');
    assert.equal((await conn.answer()).status, 200);
    conn.socket.destroy();
  });

  test('bodies within the limit reach the handler whole, declared or chunked', async () => {
    const conn = await Connection.open(served.port);
    await conn.write(upload(LIMIT));
    await conn.write(Buffer.alloc(LIMIT, 'x'));
    assert.deepEqual(JSON.parse((await conn.answer()).body), { bytes: LIMIT });
    await conn.write('POST /upload HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
    for (let i = 0; i < 4; i++) await conn.write(`1000\r\n${'x'.repeat(4096)}\r\n`);
    await conn.write('0\r\n\r\n');
    assert.deepEqual(JSON.parse((await conn.answer()).body), { bytes: LIMIT });
    // A declared length one byte over is refused without reading the body.
    await conn.write(upload(LIMIT + 1));
    assert.equal((await conn.answer()).status, 413);
    conn.socket.destroy();
  });

  test('a client that reads the 413 mid-upload may finish its upload; the connection is then reused', async () => {
    const conn = await Connection.open(served.port);
    await conn.write(upload(BIG));
    await conn.write(Buffer.alloc(LIMIT, 'x'));
    assert.equal((await conn.answer()).status, 413);
    // The answer is out; a server that closed now would reset every write below.
    for (let sent = LIMIT; sent < BIG; sent += 64 * 1024) await conn.write(Buffer.alloc(Math.min(64 * 1024, BIG - sent), 'x'));
    await conn.write('GET /ping HTTP/1.1\r\nhost: test\r\n\r\n');
    assert.equal((await conn.answer()).status, 200);
    conn.socket.destroy();
  });

  test('a client that asked to close gets the 413, may finish its upload, then sees an orderly close', async () => {
    const conn = await Connection.open(served.port);
    await conn.write(upload(BIG, 'connection: close\r\n'));
    await conn.write(Buffer.alloc(LIMIT, 'x'));
    const answer = await conn.answer();
    assert.equal(answer.status, 413);
    assert.equal(answer.headers.connection, 'close');
    for (let sent = LIMIT; sent < BIG; sent += 64 * 1024) await conn.write(Buffer.alloc(Math.min(64 * 1024, BIG - sent), 'x'));
    assert.equal(await conn.ended, 'end', 'FIN once the body is in, not a reset');
    conn.socket.destroy();
  });

  test('past the byte limit, the client has its answer and is then cut off', async () => {
    const conn = await Connection.open(limited.port);
    await conn.write(upload(100 * 1024 * 1024));
    const answered = conn.answer();
    // Keeps sending until the server gives up on it.
    let sent = 0;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    try {
      while (sent < 100 * 1024 * 1024) {
        await conn.write(chunk);
        sent += chunk.length;
      }
    } catch {
      // EPIPE or ECONNRESET: cut off, as it should be
    }
    assert.equal((await answered).status, 413);
    assert.ok(sent < 100 * 1024 * 1024, 'the server stopped reading long before 100 MiB');
    conn.socket.destroy();
  });

  test('a client that stops sending mid-body is closed after the idle limit', async () => {
    const conn = await Connection.open(limited.port);
    await conn.write(upload(BIG));
    await conn.write(Buffer.alloc(100 * 1024, 'x'));
    assert.equal((await conn.answer()).status, 413);
    assert.ok(['end', 'error'].includes(await conn.ended));
    conn.socket.destroy();
  });

  test('idle connections are kept longer than the gateway keeps its own (65 s, announced)', async () => {
    const conn = await Connection.open(served.port);
    await conn.write('GET /ping HTTP/1.1\r\nhost: test\r\n\r\n');
    const answer = await conn.answer();
    assert.equal(answer.headers['keep-alive'], `timeout=${KEEP_ALIVE_TIMEOUT_MS / 1000}`);
    conn.socket.destroy();
  });
});
