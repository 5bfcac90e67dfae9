// A body over a route's limit gets its 413 problem on every client, whether it reads while it
// uploads or only once it has sent everything, from every service and the ERP sandbox, on a busy
// machine: 200 bodies of 2.4 MB, one after another, to each limited route while CPU-burning
// processes run beside the real stack. (The services used to close the socket while the client
// was still uploading: on a busy machine the client then saw EPIPE or ECONNRESET, not the 413.)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { burnCpu, type CpuLoad } from './support/cpu-load.js';
import { Connection } from './support/raw-http.js';
import { ADMIN_KEY, startStack, type Stack } from '../harness/stack.js';

const BODIES = 200;
const SIZE = 2_400_000;
const body = Buffer.alloc(SIZE, 'x');

interface Answer {
  status: number;
  contentType: string | null;
  problem: { status?: number; title?: string };
}

type Client = (url: URL, method: string, headers: Record<string, string>) => Promise<Answer>;

/** The ways a client may send a body; each route gets all of them in turn. */
const clients: Record<string, Client> = {
  // undici with a Content-Length: reads the answer while it uploads.
  'fetch, content-length': async (url, method, headers) => {
    const res = await fetch(url, { method, headers, body });
    return { status: res.status, contentType: res.headers.get('content-type'), problem: (await res.json()) as Answer['problem'] };
  },
  // undici streaming a chunked body.
  'fetch, chunked': async (url, method, headers) => {
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= SIZE) return controller.close();
        controller.enqueue(body.subarray(sent, sent + 64 * 1024));
        sent += 64 * 1024;
      },
    });
    const res = await fetch(url, { method, headers, body: stream, duplex: 'half' } as RequestInit);
    return { status: res.status, contentType: res.headers.get('content-type'), problem: (await res.json()) as Answer['problem'] };
  },
  // A client that sends its whole body before it reads anything.
  'writes all, then reads': async (url, method, headers) => {
    const conn = await Connection.open(Number(url.port));
    try {
      const head = Object.entries({ host: url.host, 'content-length': String(SIZE), ...headers }).map(([k, v]) => `${k}: ${v}\r\n`);
      await conn.write(`${method} ${url.pathname} HTTP/1.1\r\n${head.join('')}\r\n`);
      await conn.write(body);
      const answer = await conn.answer();
      return { status: answer.status, contentType: answer.headers['content-type'] ?? null, problem: JSON.parse(answer.body) as Answer['problem'] };
    } finally {
      conn.socket.destroy();
    }
  },
};

describe(`${BODIES} bodies of 2.4 MB to each limited route, on a busy machine`, () => {
  let stack: Stack;
  let load: CpuLoad;
  before(async () => {
    // The import limit is lowered so that 2.4 MB is over it too (its default is 32 MiB).
    stack = await startStack({ workers: 0, env: { STOCK_IMPORT_MAX_BYTES: String(1024 * 1024) } });
    load = burnCpu({ processes: 2 });
  });
  after(async () => {
    await load?.stop();
    await stack?.stop();
  });

  const json = { 'content-type': 'application/json' };
  const admin = { ...json, 'x-api-key': ADMIN_KEY };
  const routes = () => [
    { route: 'POST /api/orders', url: `${stack.urls.orders}/api/orders`, headers: json },
    { route: 'POST /api/catalog/products', url: `${stack.urls.catalog}/api/catalog/products`, headers: admin },
    { route: 'PUT /api/stock/levels/{productId}', url: `${stack.urls.stock}/api/stock/levels/wooden-train`, headers: admin },
    { route: 'POST /api/stock/imports', url: `${stack.urls.stock}/api/stock/imports`, headers: admin },
    { route: 'POST /erp/records', url: `${stack.urls.erp}/erp/records`, headers: json },
  ];

  test('every one gets the 413 problem, whichever way it is sent', async (t) => {
    const kinds = Object.entries(clients);
    for (const { route, url, headers } of routes()) {
      const method = route.split(' ')[0]!;
      const seen: Record<string, number> = {};
      for (let i = 0; i < BODIES; i++) {
        const [kind, send] = kinds[i % kinds.length]!;
        let answer: Answer;
        try {
          answer = await send(new URL(url), method, headers);
        } catch (err) {
          const cause = (err as { cause?: unknown }).cause;
          assert.fail(`${route}, body ${i + 1} (${kind}): ${(err as Error).message}${cause ? ` (${String(cause)})` : ''}`);
        }
        assert.equal(answer.status, 413, `${route}, body ${i + 1} (${kind})`);
        assert.equal(answer.contentType, 'application/problem+json', `${route}, body ${i + 1} (${kind})`);
        assert.deepEqual({ status: answer.problem.status, title: answer.problem.title }, { status: 413, title: 'Payload Too Large' });
        seen[kind] = (seen[kind] ?? 0) + 1;
      }
      t.diagnostic(`${route}: ${BODIES} × 413 (${Object.entries(seen).map(([k, n]) => `${n} ${k}`).join(', ')})`);
    }
    for (const p of [stack.orders, stack.catalog, stack.stock, stack.erp]) assert.equal(p.child.exitCode, null, `${p.name} still runs`);
  });
});
