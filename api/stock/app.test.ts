// The stock API and store in-process (app.request, in-memory SQLite): import bodies (JSON array and
// NDJSON, line errors, limits), the admin key, level pagination, and the reservation rules.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createStockApp } from './app.js';
import { seedLevels } from './seed.js';
import { StockStore } from './store.js';
import { createLogger } from '../../lib/log.js';
import { createMetrics } from '../../lib/metrics.js';
import { assertAnnouncedOnce } from '../../test/support/public-topics.js';
import { stockLevelTopic } from '../../lib/topics.js';

const KEY = 'stock-test-key-0123456789';
const ORDER = '11111111-1111-4111-8111-111111111111';

function setup({ admin = true, importMaxMovements = 1000, importMaxBytes = 1024 * 1024 } = {}) {
  const store = new StockStore(':memory:');
  const app = createStockApp({
    store,
    log: createLogger('stock-test', 'silent'),
    metrics: createMetrics('stock-test'),
    ready: () => ({ database: true }),
    adminApiKey: admin ? KEY : undefined,
    importMaxMovements,
    importMaxBytes,
  });
  const outbox = (topic: string) => (store.db.prepare('SELECT count(*) AS n FROM outbox WHERE topic = ?').get(topic) as { n: number }).n;
  return { store, app, outbox };
}

const post = (app: ReturnType<typeof setup>['app'], body: string, type = 'application/x-ndjson', key = KEY) =>
  app.request('/api/stock/imports', { method: 'POST', headers: { 'content-type': type, ...(key ? { 'x-api-key': key } : {}) }, body });

interface ProblemBody {
  status: number;
  detail: string;
  errors?: { line: number; message: string }[];
}

describe('stock imports: parsing and validation', () => {
  it('accepts NDJSON and a JSON array, stores every movement and queues one event each', async () => {
    const { app, outbox, store } = setup();
    const nd = await post(app, '{"productId":"wooden-train","delta":5}\n\n{"productId":"yo-yo","delta":-1,"movementId":"sup-1"}\n');
    assert.equal(nd.status, 202);
    const progress = (await nd.json()) as { id: string; total: number; done: number; failed: number; status: string };
    assert.equal(nd.headers.get('location'), `/api/stock/imports/${progress.id}`);
    assert.deepEqual({ total: progress.total, done: progress.done, failed: progress.failed, status: progress.status }, { total: 2, done: 0, failed: 0, status: 'processing' });
    const arr = await post(app, JSON.stringify([{ productId: 'tea-set', delta: 3 }]), 'application/json; charset=utf-8');
    assert.equal(arr.status, 202);
    assert.equal(outbox('woodytoys/stock/movements'), 3);
    const ids = (store.db.prepare('SELECT movement_id AS id, line FROM movements ORDER BY rowid').all() as { id: string; line: number }[]).map((r) => [r.id, r.line]);
    assert.deepEqual(ids, [[`${progress.id}:1`, 1], ['sup-1', 3], [`${((await arr.json()) as { id: string }).id}:1`, 1]], 'derived ids unless given; source line numbers');
    const got = await app.request(`/api/stock/imports/${progress.id}`);
    assert.equal(((await got.json()) as { total: number }).total, 2);
  });

  it('rejects a batch with bad lines with a 400 problem naming each line, and stores nothing', async () => {
    const { app, outbox } = setup();
    const body = [
      '{"productId":"wooden-train","delta":5}',
      'not json',
      '{"productId":"Wooden Train","delta":1}',
      '{"productId":"yo-yo","delta":0}',
      '{"productId":"yo-yo","delta":1.5,"extra":true}',
      '{"productId":"no-such-toy","delta":2}',
      '{"productId":"yo-yo","delta":1}',
    ].join('\n');
    const res = await post(app, body);
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = (await res.json()) as ProblemBody;
    assert.deepEqual(problem.errors!.map((e) => e.line), [2, 3, 4, 5]);
    assert.match(problem.detail, /2, 3, 4, 5/);
    assert.match(problem.errors![0]!.message, /not valid JSON/);
    // Store-level checks run once every line parses: the unknown product on line 6 (a 422: the line
    // matches the schema, the store refuses it).
    const second = await post(app, body.split('\n').filter((_, i) => [0, 5, 6].includes(i)).join('\n'));
    assert.equal(second.status, 422);
    assert.deepEqual(((await second.json()) as ProblemBody).errors, [{ line: 2, message: 'productId: unknown product no-such-toy' }]);
    assert.equal(outbox('woodytoys/stock/movements'), 0, 'nothing stored');
  });

  it('refuses movement ids used twice, in the batch or by an earlier import', async () => {
    const { app } = setup();
    const twice = await post(app, '{"productId":"yo-yo","delta":1,"movementId":"a"}\n{"productId":"yo-yo","delta":1,"movementId":"a"}');
    assert.equal(twice.status, 422);
    assert.deepEqual(((await twice.json()) as ProblemBody).errors!.map((e) => e.line), [2]);
    assert.equal((await post(app, '{"productId":"yo-yo","delta":1,"movementId":"b"}')).status, 202);
    const again = await post(app, '{"productId":"yo-yo","delta":1,"movementId":"b"}');
    assert.equal(again.status, 422);
    assert.match(((await again.json()) as ProblemBody).errors![0]!.message, /already imported/);
  });

  it('answers the wrong shapes and sizes with problems', async () => {
    const { app } = setup({ importMaxMovements: 3, importMaxBytes: 4096 });
    const cases: [string, string, number][] = [
      ['{"productId":"yo-yo","delta":1}', 'text/csv', 415],
      ['{"productId":"yo-yo","delta":1}', 'application/json', 400], // an object, not an array
      ['[{"productId":"yo-yo","delta":1},', 'application/json', 400],
      ['', 'application/x-ndjson', 400],
      ['\n\n', 'application/x-ndjson', 400],
      ['{"productId":"yo-yo","delta":1}\n'.repeat(4), 'application/x-ndjson', 413],
      [JSON.stringify(Array(4).fill({ productId: 'yo-yo', delta: 1 })), 'application/json', 413],
      [`{"productId":"yo-yo","delta":1,"movementId":"${'x'.repeat(5000)}"}`, 'application/x-ndjson', 413],
    ];
    for (const [body, type, status] of cases) {
      const res = await post(app, body, type);
      assert.equal(res.status, status, `${type}: ${body.slice(0, 40)}`);
      assert.equal(res.headers.get('content-type'), 'application/problem+json');
    }
    assert.equal((await post(app, '{"productId":"yo-yo","delta":1}\n'.repeat(3))).status, 202, 'at the limit is fine');
  });

  it('reports invalid UTF-8 in NDJSON as a 400', async () => {
    const { app } = setup();
    const bytes = Buffer.concat([Buffer.from('{"productId":"yo-yo","delta":1}\n{"productId":"'), Buffer.from([0xff, 0xfe]), Buffer.from('","delta":1}\n')]);
    const res = await app.request('/api/stock/imports', { method: 'POST', headers: { 'content-type': 'application/x-ndjson', 'x-api-key': KEY }, body: bytes });
    assert.equal(res.status, 400);
  });

  it('applies each worker result once: progress advances, recorded movements change the level', async () => {
    const { app, store } = setup();
    const res = await post(app, '{"productId":"yo-yo","delta":4}\n{"productId":"yo-yo","delta":-2}\n{"productId":"yo-yo","delta":7}');
    const { id } = (await res.json()) as { id: string };
    const start = store.level('yo-yo')!.available;
    assert.equal(store.applyMovementOutcome({ importId: id, movementId: `${id}:1`, outcome: 'recorded', erpReference: 'r1' }), 'applied');
    assert.equal(store.applyMovementOutcome({ importId: id, movementId: `${id}:1`, outcome: 'recorded', erpReference: 'r1' }), 'duplicate');
    assert.equal(store.applyMovementOutcome({ importId: id, movementId: `${id}:2`, outcome: 'recorded', erpReference: 'r2' }), 'applied');
    assert.equal(store.getImport(id)!.status, 'processing');
    assert.equal(store.applyMovementOutcome({ importId: id, movementId: `${id}:3`, outcome: 'failed', reason: 'ERP refused' }), 'applied');
    assert.equal(store.applyMovementOutcome({ importId: id, movementId: 'nope', outcome: 'recorded' }), 'unknown-movement');
    const done = store.getImport(id)!;
    assert.deepEqual({ status: done.status, done: done.done, failed: done.failed }, { status: 'completed_with_failures', done: 2, failed: 1 });
    assert.deepEqual(done.failures, [{ movementId: `${id}:3`, line: 3, reason: 'ERP refused' }]);
    assert.equal(store.level('yo-yo')!.available, start + 2);
  });
});

describe('stock API: levels and the admin key', () => {
  it('pages through the levels and filters those in stock', async () => {
    const { app } = setup();
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let i = 0; i < 20; i++) {
      const page = (await (await app.request(`/api/stock/levels?limit=10${cursor ? `&cursor=${cursor}` : ''}`)).json()) as { items: { productId: string }[]; nextCursor: string | null };
      seen.push(...page.items.map((l) => l.productId));
      cursor = page.nextCursor;
      if (!cursor) break;
    }
    assert.deepEqual(seen, seedLevels.map((l) => l.productId).sort());
    assert.equal((await app.request('/api/stock/levels?inStock=false')).status, 200);
    assert.equal((await app.request('/api/stock/levels?limit=1000')).status, 400);
    assert.equal((await app.request('/api/stock/levels/no-such-toy')).status, 404);
  });

  it('needs the API key for adjustments, stock counts and imports', async () => {
    const { app } = setup();
    const adjust = (body: unknown, headers: Record<string, string>) =>
      app.request('/api/stock/levels/yo-yo/adjustments', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    assert.equal((await adjust({ delta: 2, reason: 'found' }, {})).status, 401);
    assert.equal((await adjust({ delta: 2, reason: 'found' }, { 'x-api-key': 'wrong' })).status, 401);
    assert.equal((await post(app, '{"productId":"yo-yo","delta":1}', 'application/x-ndjson', '')).status, 401);
    const before = ((await (await app.request('/api/stock/levels/yo-yo')).json()) as { available: number }).available;
    const ok = await adjust({ delta: 2, reason: 'found' }, { 'x-api-key': KEY });
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as { available: number }).available, before + 2);
    assert.equal((await adjust({ delta: -1_000_000, reason: 'oops' }, { 'x-api-key': KEY })).status, 409);
    assert.equal((await adjust({ delta: 0, reason: 'zero' }, { 'x-api-key': KEY })).status, 400);
    const put = await app.request('/api/stock/levels/new-toy', { method: 'PUT', headers: { 'content-type': 'application/json', 'x-api-key': KEY }, body: JSON.stringify({ available: 7 }) });
    assert.equal(put.status, 200);
    assert.equal(((await put.json()) as { available: number }).available, 7);
    const { app: closed } = setup({ admin: false });
    const disabled = await closed.request('/api/stock/levels/yo-yo', { method: 'PUT', headers: { 'content-type': 'application/json', 'x-api-key': KEY }, body: '{"available":1}' });
    assert.equal(disabled.status, 503);
  });
});

describe('stock levels on their public topics', () => {
  it('are announced once when a database from before the public namespace opens, and not again', () => {
    assertAnnouncedOnce({ open: (file) => new StockStore(file), topics: stockLevelTopic('%'), seeded: seedLevels.length, metaTable: 'stock_meta' });
  });
});

describe('stock reservations', () => {
  const order = (items: { productId: string; quantity: number }[], orderId = ORDER) => ({ orderId, customer: { name: 'Ada', email: 'ada@example.com' }, items });

  it('reserves all items or none, once per order', () => {
    const { store, outbox } = setup();
    store.setAvailable('yo-yo', 3, 'test');
    store.setAvailable('tea-set', 1, 'test');
    const rejected = store.reserve(order([{ productId: 'yo-yo', quantity: 2 }, { productId: 'tea-set', quantity: 1 }, { productId: 'tea-set', quantity: 1 }]));
    assert.equal(rejected.result, 'rejected');
    assert.deepEqual([store.level('yo-yo')!.available, store.level('tea-set')!.available], [3, 1], 'nothing reserved');
    assert.equal(outbox('woodytoys/stock/rejected'), 1);
    const other = '22222222-2222-4222-8222-222222222222';
    assert.deepEqual(store.reserve(order([{ productId: 'yo-yo', quantity: 3 }], other)), { result: 'reserved' });
    assert.deepEqual(store.reserve(order([{ productId: 'yo-yo', quantity: 3 }], other)), { result: 'duplicate' });
    assert.deepEqual([store.level('yo-yo')!.available, store.level('yo-yo')!.reserved], [0, 3]);
    assert.equal(outbox('woodytoys/stock/reserved'), 1);
    assert.equal(outbox(stockLevelTopic('yo-yo')), 1, 'only the newest unsent level per product stays queued');
  });

  it('releases a failed order and sells a confirmed one, each once', () => {
    const { store } = setup();
    store.setAvailable('yo-yo', 5, 'test');
    const a = '33333333-3333-4333-8333-333333333333';
    const b = '44444444-4444-4444-8444-444444444444';
    store.reserve(order([{ productId: 'yo-yo', quantity: 2 }], a));
    store.reserve(order([{ productId: 'yo-yo', quantity: 1 }], b));
    assert.equal(store.release(a, 'ERP refused'), 'released');
    assert.equal(store.release(a, 'ERP refused'), 'not-held');
    assert.equal(store.sell(b), 'released');
    assert.equal(store.sell(b), 'not-held');
    assert.deepEqual([store.level('yo-yo')!.available, store.level('yo-yo')!.reserved], [4, 0]);
    // An order that failed before its creation reached us reserves nothing later.
    const c = '55555555-5555-4555-8555-555555555555';
    assert.equal(store.release(c, 'cancelled'), 'no-reservation');
    assert.deepEqual(store.reserve(order([{ productId: 'yo-yo', quantity: 1 }], c)), { result: 'duplicate' });
    assert.equal(store.level('yo-yo')!.available, 4);
  });
});
