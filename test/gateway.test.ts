// The gateway, tested with real nginx running the repository's nginx.conf (rendered on free ports):
//   - in front of the real services (harness/stack.ts: broker, ERP, catalog, stock, orders,
//     worker), for routing, limits, the /mqtt WebSocket and the hidden endpoints;
//   - in front of recording stand-ins, to see exactly which path, query and headers each
//     service receives.
// Each rate-limit case is a different client: a different loopback source address (127.0.0.N),
// so the cases never share a bucket.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request, Agent, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { parse } from 'yaml';
import { checkConfig, startGateway, type RunningGateway } from '../gateway/nginx.js';
import { TEMPLATE, gatewayEnv, placeholders, renderGateway, substitute } from '../gateway/render.js';
import { parseConfig, type ConfigError } from '../lib/config.js';
import { sleep } from '../lib/shutdown.js';
import { requireProgram } from './support/programs.js';
import { ROOT, eventually, freePort } from '../harness/process.js';
import { establishedPeers, tcpTableSkip } from './support/tcp-connections.js';
import { accessLog as readAccessLog, gatewayDir, roundTrip } from '../harness/gateway.js';
import { sampleOrder, startStack, type Stack } from '../harness/stack.js';

const skip = requireProgram('nginx', 'nginx');
// Other loopback source addresses than 127.0.0.1 work out of the box on Linux only.
const otherClients = process.platform === 'linux' ? false : 'needs the 127.0.0.0/8 loopback range (Linux)';

// Small limits so the tests see them at once: a write token every 3 s, a read token every 2 s.
const LIMITS = {
  GATEWAY_READ_RATE_PER_MIN: '30',
  GATEWAY_READ_BURST: '8',
  GATEWAY_WRITE_RATE_PER_MIN: '20',
  GATEWAY_WRITE_BURST: '3',
  GATEWAY_CONN_PER_IP: '3',
  GATEWAY_WORKER_PROCESSES: '2',
  // The key tier: larger bursts than an address gets, still small enough to see the limit; slow
  // refills (a token every 5 s), so that a loaded machine's slow requests never earn an extra one.
  GATEWAY_KEY_READ_RATE_PER_MIN: '12',
  GATEWAY_KEY_READ_BURST: '20',
  GATEWAY_KEY_WRITE_RATE_PER_MIN: '12',
  GATEWAY_KEY_WRITE_BURST: '6',
};
const PARTNER_KEY = 'test-partner-key-1';
const LOAD_KEY = 'test-load-key-2';

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json<T = Record<string, unknown>>(): T;
}

const agent = new Agent({ keepAlive: true });

/** One HTTP request with the path sent exactly as given, from a chosen loopback address. */
function call(base: string, path: string, { method = 'GET', headers = {}, body, from = '127.0.0.1' }: { method?: string; headers?: Record<string, string>; body?: string | Buffer; from?: string } = {}): Promise<Reply> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path, method, headers, agent, localAddress: from }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: <T>() => JSON.parse(text) as T });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const postOrder = (base: string, from: string, headers: Record<string, string> = {}) =>
  call(base, '/api/orders', { method: 'POST', from, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(sampleOrder()) });

function assertTooManyRequests(reply: Reply, retryAfter: string) {
  assert.equal(reply.status, 429);
  assert.equal(reply.headers['content-type'], 'application/problem+json');
  assert.equal(reply.headers['retry-after'], retryAfter);
  const body = reply.json();
  assert.equal(body.status, 429);
  assert.equal(body.title, 'Too Many Requests');
  assert.equal(body.type, 'about:blank');
}

describe('gateway configuration (no nginx needed)', () => {
  const template = readFileSync(TEMPLATE, 'utf8');
  const inTemplate = new Set([...template.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]));

  test('the renderer, and compose\u2019s env file with the gateway\u2019s environment, give every placeholder of nginx.conf a value', () => {
    const rendered = placeholders(parseConfig(gatewayEnv, {}));
    assert.deepEqual(new Set(Object.keys(rendered)), inTemplate);
    const composeEnv = readFileSync(join(ROOT, 'gateway/compose.env'), 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.slice(0, l.indexOf('=')));
    const compose = parse(readFileSync(join(ROOT, 'compose.yaml'), 'utf8'), { merge: true }) as { services: { gateway: { environment: Record<string, string> } } };
    // NGINX_ENVSUBST_OUTPUT_DIR is the image's own setting, not a placeholder.
    const environment = Object.keys(compose.services.gateway.environment).filter((k) => k !== 'NGINX_ENVSUBST_OUTPUT_DIR');
    assert.deepEqual(new Set([...composeEnv, ...environment]), inTemplate);
  });

  test('only the known ${NAME} placeholders are substituted; nginx\u2019s own $variables stay', () => {
    assert.equal(substitute('listen ${GATEWAY_PORT}; return 200 $request_id;', { GATEWAY_PORT: '8080' }), 'listen 8080; return 200 $request_id;');
    assert.throws(() => substitute('server ${SOMETHING_ELSE};', { GATEWAY_PORT: '8080' }), /SOMETHING_ELSE/);
  });

  test('bad values stop the renderer, naming the variable; Retry-After follows the rate', () => {
    assert.throws(() => parseConfig(gatewayEnv, { ORDERS_UPSTREAM: 'orders; return 200' }), (e: ConfigError) => /ORDERS_UPSTREAM/.test(e.message));
    assert.throws(() => parseConfig(gatewayEnv, { GATEWAY_API_KEYS: 'good-key-0001,bad key' }), (e: ConfigError) => /GATEWAY_API_KEYS/.test(e.message));
    assert.throws(() => parseConfig(gatewayEnv, { GATEWAY_RUNTIME_DIR: '/tmp/x;' }), /GATEWAY_RUNTIME_DIR/);
    const values = placeholders(parseConfig(gatewayEnv, { GATEWAY_WRITE_RATE_PER_MIN: '7', GATEWAY_READ_RATE_PER_MIN: '600', GATEWAY_KEY_WRITE_RATE_PER_MIN: '13' }));
    assert.equal(values.GATEWAY_WRITE_RETRY_AFTER, '9'); // one request per 60/7 = 8.6 s
    assert.equal(values.GATEWAY_READ_RETRY_AFTER, '1');
    assert.equal(values.GATEWAY_KEY_WRITE_RETRY_AFTER, '5'); // 60/13 = 4.6 s
    assert.equal(values.GATEWAY_KEY_READ_RETRY_AFTER, '1');
    assert.throws(() => parseConfig(gatewayEnv, { GATEWAY_KEY_WRITE_RATE_PER_MIN: '0' }), /GATEWAY_KEY_WRITE_RATE_PER_MIN/);
  });
});

describe('gateway (real nginx)', { skip }, () => {
  test('nginx -t accepts the rendered configuration, with and without API keys', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gateway-t-'));
    try {
      for (const keys of ['', 'partner-key-0001,partner-key-0002']) {
        const gateway = renderGateway({ GATEWAY_RUNTIME_DIR: dir, GATEWAY_API_KEYS: keys, GATEWAY_PORT: '8080' });
        const { ok, output } = checkConfig(gateway);
        assert.ok(ok, output);
        assert.match(output, /test is successful/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('in front of the real services', () => {
    let stack: Stack;
    let gateway: RunningGateway;
    let runtimeDir: string;

    before(async () => {
      runtimeDir = gatewayDir('gateway-stack-');
      stack = await startStack();
      const wsUrl = stack.broker.logs.find((l) => typeof l.ws === 'string')?.ws;
      gateway = await startGateway({
        ...LIMITS,
        GATEWAY_RUNTIME_DIR: runtimeDir,
        GATEWAY_PORT: String(await freePort()),
        GATEWAY_API_KEYS: `${PARTNER_KEY},${LOAD_KEY}`,
        ORDERS_UPSTREAM: new URL(stack.urls.orders).host,
        CATALOG_UPSTREAM: new URL(stack.urls.catalog).host,
        STOCK_UPSTREAM: new URL(stack.urls.stock).host,
        MQTT_WS_UPSTREAM: new URL(String(wsUrl)).host,
      });
    });

    after(async () => {
      agent.destroy();
      await gateway?.stop();
      await stack?.stop();
      if (runtimeDir) rmSync(runtimeDir, { recursive: true, force: true });
    });

    const accessLog = () => readAccessLog(gateway.accessLog);
    // nginx writes a request's line once the response has gone out, so the client can be first:
    // wait for the lines a test expects, then assert on them.
    const logLines = (pick: (l: Record<string, string | number>) => boolean, count: number) =>
      eventually(() => {
        const lines = accessLog().filter(pick);
        return lines.length >= count && lines;
      }, { what: `${count} access log lines`, timeoutMs: 10_000 }).catch(() => accessLog().filter(pick));

    test('an order placed through the gateway is the order the service stored; the request id goes both ways', async () => {
      const from = '127.0.0.10';
      const placed = await postOrder(gateway.url, from, { 'x-request-id': 'test-order-1' });
      assert.equal(placed.status, 202, placed.text);
      assert.equal(placed.headers['x-request-id'], 'test-order-1', 'the client sees its own id, once');
      const location = placed.headers.location!;
      assert.match(location, /^\/api\/orders\/[0-9a-f-]{36}$/);

      const viaGateway = await call(gateway.url, `${location}?view=full`, { from });
      const direct = await call(stack.urls.orders, `${location}?view=full`);
      assert.equal(viaGateway.status, 200);
      assert.equal(viaGateway.json().id, placed.json().id);
      assert.equal(viaGateway.json().id, direct.json().id);
      assert.match(String(viaGateway.headers['x-request-id']), /^[0-9a-f]{32}$/, 'nginx made an id');

      const [logged] = await logLines((l) => l.request_id === 'test-order-1', 1);
      assert.ok(logged, 'the access log line carries the request id');
      assert.equal(logged.status, 202);
      assert.equal(logged.uri, '/api/orders');
      assert.equal(logged.limit_req, 'PASSED');
    });

    for (const { service, probe } of [
      { service: 'catalog', probe: '/api/catalog/products?category=vehicles&limit=2' },
      // Not a level: orders placed by the other cases move the levels between the two reads.
      { service: 'stock', probe: '/api/stock/imports/00000000-0000-4000-8000-000000000000?probe=1' },
    ] as const) {
      test(`/api/${service} reaches the ${service} service with path and query intact`, async () => {
        const viaGateway = await call(gateway.url, probe, { from: '127.0.0.10' });
        const direct = await call(stack.urls[service], probe);
        assert.equal(viaGateway.status, direct.status, viaGateway.text);
        assert.deepEqual(viaGateway.json(), direct.json());
      });
    }

    test('the services\u2019 metrics and readiness stay inside; /healthz is the gateway\u2019s own', async () => {
      const from = '127.0.0.11';
      for (const path of ['/metrics', '/readyz', '/api/orders/../../metrics', '/api/orders/%2e%2e/%2e%2e/readyz', '/metrics/']) {
        const reply = await call(gateway.url, path, { from });
        assert.ok([403, 404].includes(reply.status), `${path} → ${reply.status}`);
        assert.doesNotMatch(reply.text, /# HELP|"checks"/, path);
      }
      const health = await call(gateway.url, '/healthz', { from });
      assert.deepEqual(health.json(), { status: 'ok', service: 'gateway' });
      const unknown = await call(gateway.url, '/api/nothing-here', { from });
      assert.equal(unknown.status, 404);
      assert.equal(unknown.headers['content-type'], 'application/problem+json');
    });

    test('a burst of writes from one client: exactly 1 + burst get through, the rest 429 with a problem body', { skip: otherClients }, async () => {
      const from = '127.0.0.2';
      const replies: Reply[] = [];
      for (let i = 0; i < 8; i++) replies.push(await postOrder(gateway.url, from));
      const passed = replies.filter((r) => r.status !== 429);
      assert.equal(passed.length, 1 + Number(LIMITS.GATEWAY_WRITE_BURST), replies.map((r) => r.status).join(','));
      assert.ok(passed.every((r) => r.status === 202));
      assert.deepEqual(replies.map((r) => r.status === 429), [false, false, false, false, true, true, true, true]);
      for (const r of replies.filter((r) => r.status === 429)) {
        assertTooManyRequests(r, '3'); // 60 s / 20 per minute
        assert.match(String(r.headers['x-request-id']), /^[0-9a-f]{32}$/);
      }

      // Reads are another, more generous bucket: the same client can still look.
      assert.notEqual((await call(gateway.url, '/api/orders/openapi.json', { from })).status, 429);

      const mine = await logLines((l) => l.remote_addr === from && l.method === 'POST', replies.length);
      assert.deepEqual(
        mine.map((l) => l.limit_req),
        replies.map((r) => (r.status === 429 ? 'REJECTED' : 'PASSED')),
        'the access log records each outcome',
      );
    });

    test('another client is not affected by the first one\u2019s burst', { skip: otherClients }, async () => {
      for (let i = 0; i < 6; i++) await postOrder(gateway.url, '127.0.0.3');
      assert.equal((await postOrder(gateway.url, '127.0.0.3')).status, 429);
      assert.equal((await postOrder(gateway.url, '127.0.0.4')).status, 202);
    });

    test('a burst of reads: exactly 1 + burst get through', { skip: otherClients }, async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) statuses.push((await call(gateway.url, '/api/orders/openapi.json', { from: '127.0.0.5' })).status);
      // What the service answers does not matter here, only whether the gateway let it through.
      assert.equal(statuses.filter((s) => s !== 429).length, 1 + Number(LIMITS.GATEWAY_READ_BURST), statuses.join(','));
      assert.ok(statuses.slice(-3).every((s) => s === 429));
      const last = await call(gateway.url, '/api/orders/openapi.json', { from: '127.0.0.5' });
      assertTooManyRequests(last, '2'); // 60 s / 30 per minute
    });

    test('the bucket refills at the configured rate: one request, not the whole burst', { skip: otherClients }, async () => {
      const from = '127.0.0.6';
      for (let i = 0; i < 5; i++) await postOrder(gateway.url, from);
      assert.equal((await postOrder(gateway.url, from)).status, 429, 'the bucket is empty');
      // One write token every 3 s; rejected requests do not drain the bucket, so polling is fair.
      let admitted: Reply | undefined;
      for (let i = 0; i < 40 && !admitted; i++) {
        await new Promise((r) => setTimeout(r, 250));
        const reply = await postOrder(gateway.url, from);
        if (reply.status !== 429) admitted = reply;
      }
      assert.equal(admitted?.status, 202, 'a request gets through once the bucket has refilled');
      assert.equal((await postOrder(gateway.url, from)).status, 429, 'the refill was one request, not a new burst');
    });

    test('a rotating made-up API key does not escape the limit; a known key has its own bucket', { skip: otherClients }, async () => {
      const from = '127.0.0.7';
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) statuses.push((await postOrder(gateway.url, from, { 'x-api-key': `made-up-key-${i}-${Date.now()}` })).status);
      assert.equal(statuses.filter((s) => s !== 429).length, 1 + Number(LIMITS.GATEWAY_WRITE_BURST), statuses.join(','));
      assert.equal((await postOrder(gateway.url, from)).status, 429, 'no key: the same IP bucket');
      assert.equal((await postOrder(gateway.url, from, { 'x-api-key': PARTNER_KEY })).status, 202, 'the partner has its own bucket');
    });

    test('a listed key gets the key tier: its own rates and bursts, apart from its IP address', { skip: otherClients }, async () => {
      const from = '127.0.0.12';
      // The address's own write bucket is emptied first: the key does not share it.
      for (let i = 0; i < 1 + Number(LIMITS.GATEWAY_WRITE_BURST); i++) assert.equal((await postOrder(gateway.url, from)).status, 202);
      assert.equal((await postOrder(gateway.url, from)).status, 429);

      const writes: Reply[] = [];
      for (let i = 0; i < 10; i++) writes.push(await postOrder(gateway.url, from, { 'x-api-key': LOAD_KEY }));
      assert.deepEqual(
        writes.map((r) => r.status),
        [...Array<number>(1 + Number(LIMITS.GATEWAY_KEY_WRITE_BURST)).fill(202), ...Array<number>(10 - 1 - Number(LIMITS.GATEWAY_KEY_WRITE_BURST)).fill(429)],
      );
      assertTooManyRequests(writes.at(-1)!, '5'); // 60 s / 12 per minute: the key tier's refill

      const reads: number[] = [];
      for (let i = 0; i < 24; i++) reads.push((await call(gateway.url, '/api/orders/openapi.json', { from, headers: { 'x-api-key': LOAD_KEY } })).status);
      assert.equal(reads.filter((s) => s !== 429).length, 1 + Number(LIMITS.GATEWAY_KEY_READ_BURST), reads.join(','));
      assert.ok(1 + Number(LIMITS.GATEWAY_KEY_READ_BURST) > 1 + Number(LIMITS.GATEWAY_READ_BURST), 'more than an address may read at once');

      const mine = await logLines((l) => l.remote_addr === from && l.client === 'key', 10 + 24);
      assert.equal(mine.length, 10 + 24, 'the access log tells key clients apart');
    });

    test('an oversized order is refused by the gateway with a 413 problem', { skip: otherClients }, async () => {
      const body = JSON.stringify({ ...sampleOrder(), padding: 'x'.repeat(20 * 1024) });
      const reply = await call(gateway.url, '/api/orders', { method: 'POST', from: '127.0.0.8', headers: { 'content-type': 'application/json' }, body });
      assert.equal(reply.status, 413);
      assert.equal(reply.headers['content-type'], 'application/problem+json');
      assert.match(String(reply.json().detail), /at the gateway/);
    });

    test('limit_conn: a client holds at most GATEWAY_CONN_PER_IP connections at once', { skip: otherClients }, async () => {
      const url = `ws://127.0.0.1:${new URL(gateway.url).port}/mqtt`;
      const open = (): Promise<WebSocket | number> =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(url, 'mqtt', { localAddress: '127.0.0.9' });
          ws.once('open', () => resolve(ws));
          ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
          ws.once('error', reject);
        });
      const held: WebSocket[] = [];
      try {
        for (let i = 0; i < Number(LIMITS.GATEWAY_CONN_PER_IP); i++) {
          const ws = await open();
          assert.ok(ws instanceof WebSocket, `connection ${i + 1} is allowed`);
          held.push(ws);
        }
        assert.equal(await open(), 429, 'one more is refused');
      } finally {
        for (const ws of held) ws.terminate();
      }
    });

    test('an idle gap longer than the services\u2019 old keep-alive (5 s) costs no 502: nginx\u2019s upstream connections outlive it', { skip: otherClients || tcpTableSkip }, async () => {
      const orders = new URL(stack.urls.orders);
      // Writes, which nginx never retries on another connection; each from an address of its own,
      // so that no 429 stands in for the answer.
      let n = 0;
      const round = () => Promise.all(Array.from({ length: 6 }, () => postOrder(gateway.url, `127.0.1.${++n}`)));
      assert.deepEqual((await round()).map((r) => r.status), Array(6).fill(202));
      const idle = await eventually(() => {
        const peers = establishedPeers(orders.hostname, Number(orders.port));
        return peers.size > 0 && peers;
      }, { what: 'nginx\u2019s idle keep-alive connections to orders' });

      // The idle gap itself is what is tested: longer than Node's default keep-alive, 5 s (+1 s).
      await sleep(7_500);
      const still = establishedPeers(orders.hostname, Number(orders.port));
      assert.deepEqual([...idle].filter((p) => !still.has(p)), [], 'the service closed none of them');

      const after = await round();
      assert.deepEqual(after.map((r) => r.status), Array(6).fill(202), after.map((r) => r.text).join('\n'));
      const logged = await logLines((l) => String(l.remote_addr).startsWith('127.0.1.'), 12);
      assert.equal(logged.length, 12);
      assert.ok(logged.every((l) => l.status === 202 && l.upstream_status === '202'));
    });

    test('an MQTT client subscribes and publishes through /mqtt', async () => {
      const url = `ws://127.0.0.1:${new URL(gateway.url).port}/mqtt`;
      const topic = 'woodytoys/test/gateway';
      assert.deepEqual(await roundTrip(url, { clientId: `gateway-test-${process.pid}`, topic, text: 'hello through nginx' }), [topic, 'hello through nginx']);
    });
  });

  describe('routing, seen by recording stand-ins', () => {
    interface Seen {
      service: string;
      method: string;
      url: string;
      headers: IncomingHttpHeaders;
      bytes: number;
    }
    const servers: Server[] = [];
    let gateway: RunningGateway;
    let dir: string;

    async function recorder(service: string): Promise<string> {
      const seen = (req: IncomingMessage, bytes: number): string => JSON.stringify({ service, method: req.method ?? '', url: req.url ?? '', headers: req.headers, bytes } satisfies Seen);
      const server = createServer((req, res) => {
        let bytes = 0;
        req.on('data', (c: Buffer) => (bytes += c.length));
        req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'from-the-service' }).end(seen(req, bytes)));
      });
      // A WebSocket handshake arrives as 'upgrade'; the stand-in answers it as a plain 200.
      server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
        const body = seen(req, 0);
        socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      servers.push(server);
      return `127.0.0.1:${(server.address() as { port: number }).port}`;
    }

    before(async () => {
      dir = gatewayDir('gateway-routing-');
      gateway = await startGateway({
        GATEWAY_RUNTIME_DIR: dir,
        GATEWAY_PORT: String(await freePort()),
        GATEWAY_WORKER_PROCESSES: '1',
        ORDERS_UPSTREAM: await recorder('orders'),
        CATALOG_UPSTREAM: await recorder('catalog'),
        STOCK_UPSTREAM: await recorder('stock'),
        MQTT_WS_UPSTREAM: await recorder('broker'),
      });
    });

    after(async () => {
      await gateway?.stop();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      rmSync(dir, { recursive: true, force: true });
    });

    for (const [method, path, service] of [
      ['GET', '/api/orders', 'orders'],
      ['POST', '/api/orders?dryRun=true', 'orders'],
      ['GET', '/api/orders/5f0c/items?x=1&y=a%2Fb&z=%C3%A9t%C3%A9', 'orders'],
      ['GET', '/api/catalog/products?category=vehicles&q=wooden%20train&limit=2', 'catalog'],
      ['GET', '/api/catalog', 'catalog'],
      ['GET', '/api/stock/levels/wooden-train?fields=a,b', 'stock'],
      ['POST', '/api/stock/imports?source=warehouse-2', 'stock'],
      ['GET', '/api/stock/imports/42', 'stock'],
    ] as const) {
      test(`${method} ${path} → ${service}, path and query unchanged`, async () => {
        const reply = await call(gateway.url, path, { method, body: method === 'POST' ? '{}' : undefined, headers: method === 'POST' ? { 'content-type': 'application/json' } : {} });
        assert.equal(reply.status, 200, reply.text);
        const seen = reply.json<Seen>();
        assert.equal(seen.service, service);
        assert.equal(seen.method, method);
        assert.equal(seen.url, path);
        assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
        assert.match(String(seen.headers['x-request-id']), /^[0-9a-f]{32}$/);
        assert.equal(reply.headers['x-request-id'], seen.headers['x-request-id'], 'the client gets the id the service got');
      });
    }

    test('a prefix is a whole path segment: /api/ordersXYZ is not the orders service', async () => {
      const reply = await call(gateway.url, '/api/ordersXYZ');
      assert.equal(reply.status, 404);
      assert.equal(reply.headers['content-type'], 'application/problem+json');
    });

    test('a client\u2019s request id is kept; a malformed one is replaced', async () => {
      const kept = await call(gateway.url, '/api/orders/x', { headers: { 'x-request-id': 'abc-123' } });
      assert.equal(kept.json<Seen>().headers['x-request-id'], 'abc-123');
      assert.equal(kept.headers['x-request-id'], 'abc-123');
      const replaced = await call(gateway.url, '/api/orders/x', { headers: { 'x-request-id': 'no spaces {allowed}' } });
      assert.match(String(replaced.json<Seen>().headers['x-request-id']), /^[0-9a-f]{32}$/);
    });

    test('bulk imports may be large (20m); everything else stays small', async () => {
      const big = Buffer.alloc(1024 * 1024, 'a');
      const imported = await call(gateway.url, '/api/stock/imports', { method: 'POST', body: big, headers: { 'content-type': 'application/json' } });
      assert.equal(imported.status, 200);
      assert.equal(imported.json<Seen>().bytes, big.length);
      for (const path of ['/api/stock/levels', '/api/catalog/products', '/api/orders']) {
        const refused = await call(gateway.url, path, { method: 'POST', body: big, headers: { 'content-type': 'application/json' } });
        assert.equal(refused.status, 413, path);
      }
    });

    test('/mqtt is proxied as a WebSocket upgrade to the broker', async () => {
      // The stand-in is plain HTTP: it sees the upgrade request with its headers and answers 200.
      const reply = await call(gateway.url, '/mqtt', { headers: { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-protocol': 'mqtt' } });
      const seen = reply.json<Seen>();
      assert.equal(seen.service, 'broker');
      assert.equal(seen.headers.upgrade, 'websocket');
      assert.equal(seen.headers.connection, 'upgrade');
    });
  });
});
