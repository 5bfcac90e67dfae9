// The errors nginx answers itself (not the services'): each is an application/problem+json body
// whose "status" is the status line's, whatever the error: a service that is down (502), a
// request nginx cannot read (400, 414, 431, 501, 505), a static path that is not there.
// Checked on the configuration for every error_page, and live against real nginx.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readFileSync, rmSync } from 'node:fs';
import { startGateway, type RunningGateway } from '../gateway/nginx.js';
import { TEMPLATE } from '../gateway/render.js';
import { requireProgram } from './support/programs.js';
import { freePort } from '../harness/process.js';
import { gatewayDir } from '../harness/gateway.js';
import { Connection } from './support/raw-http.js';

const skip = requireProgram('nginx', 'nginx');
const template = readFileSync(TEMPLATE, 'utf8');

/** status the client sees → the internal URI that writes its body, from every error_page line. */
function errorPages(): Map<number, string> {
  const pages = new Map<number, string>();
  for (const [, codes, changed, uri] of template.matchAll(/^\s*error_page\s+([\d\s]+?)\s+(?:=(\d{3})\s+)?(\/_problem\/\S+);/gm)) {
    for (const code of codes!.split(/\s+/)) pages.set(Number(changed ?? code), uri!);
  }
  return pages;
}

/** The body fragment of each /_problem/<status> (the map in nginx.conf). */
function problemBodies(): Map<string, string> {
  const map = /map \$uri \$woody_problem \{([^}]*)\}/.exec(template);
  assert.ok(map, 'nginx.conf maps each /_problem/<status> to its body');
  return new Map([...map[1]!.matchAll(/^\s*(\/_problem\/\d{3}) '(.*)';$/gm)].map(([, uri, body]) => [uri!, body!]));
}

describe('the gateway\u2019s own errors (configuration)', () => {
  test('every error_page goes to a body whose status is the status the client sees', () => {
    const pages = errorPages();
    const bodies = problemBodies();
    for (const code of [400, 404, 414, 431, 500, 501, 502, 503, 504, 505]) assert.ok(pages.has(code), `error_page for ${code}`);
    for (const [status, uri] of pages) {
      assert.equal(uri, `/_problem/${status}`, `the client sees ${status}, so its body is /_problem/${status}`);
      const body = bodies.get(uri);
      assert.ok(body, `a body for ${uri}`);
      const parsed = JSON.parse(`{${body.replace(/\$woody_json_uri/g, '/a/path')}}`) as { status: number; title: string };
      assert.equal(parsed.status, status, uri);
      assert.ok(parsed.title.length > 0);
    }
  });
});

describe('the gateway\u2019s own errors (real nginx)', { skip }, () => {
  let gateway: RunningGateway;
  let dir: string;
  before(async () => {
    dir = gatewayDir('gateway-errors-');
    // Every service is down: a port nobody listens on.
    const down = `127.0.0.1:${await freePort()}`;
    gateway = await startGateway({
      GATEWAY_RUNTIME_DIR: dir,
      GATEWAY_PORT: String(await freePort()),
      GATEWAY_WORKER_PROCESSES: '1',
      ORDERS_UPSTREAM: down,
      CATALOG_UPSTREAM: down,
      STOCK_UPSTREAM: down,
      MQTT_WS_UPSTREAM: down,
    });
  });
  after(async () => {
    await gateway?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Sends `request` exactly as written and returns the answer. */
  async function raw(request: string) {
    const conn = await Connection.open(Number(new URL(gateway.url).port));
    try {
      await conn.write(request);
      return await conn.answer();
    } finally {
      conn.socket.destroy();
    }
  }

  const cases: [string, string, number][] = [
    ['a service that is down', 'GET /api/orders HTTP/1.1\r\nhost: x\r\n\r\n', 502],
    ['a write to a service that is down', 'POST /api/catalog/products HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}', 502],
    ['a down service, a path with a quote', 'GET /api/stock/levels/a"b%22c HTTP/1.1\r\nhost: x\r\n\r\n', 502],
    ['no Host header', 'GET /api/orders HTTP/1.1\r\n\r\n', 400],
    ['two Host headers', 'GET /api/orders HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n', 400],
    ['a request line too long', `GET /api/orders?q=${'a'.repeat(10_000)} HTTP/1.1\r\nhost: x\r\n\r\n`, 414],
    ['a header too large', `GET /api/orders HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(10_000)}\r\n\r\n`, 431],
    ['an unknown transfer coding', 'POST /api/orders HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n', 501],
    ['HTTP/2.0 in an HTTP/1 request line', 'GET /api/orders HTTP/2.0\r\nhost: x\r\n\r\n', 505],
    ['a static file that is not there', 'GET /nothing-here.html HTTP/1.1\r\nhost: x\r\n\r\n', 404],
    ['a POST to a static file', 'POST /index.html HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n', 405],
  ];
  for (const [what, request, status] of cases) {
    test(`${what}: ${status}, and the problem body says ${status}`, async () => {
      const answer = await raw(request);
      assert.equal(answer.status, status, answer.body);
      assert.equal(answer.headers['content-type'], 'application/problem+json');
      const problem = JSON.parse(answer.body) as { status: number; type: string; title: string };
      assert.equal(problem.status, status);
      assert.equal(problem.type, 'about:blank');
      assert.match(String(answer.headers['x-request-id']), /^[0-9a-f]{32}$/);
      if ([502, 503, 504].includes(status)) assert.equal(answer.headers['retry-after'], '5');
    });
  }
});
