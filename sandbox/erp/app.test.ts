// The ERP sandbox's HTTP API faces whatever a worker (or anyone on its port) sends: an ill-formed
// record is a 400 problem that charges no capacity and records nothing, never a 500.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { groupCommit } from '../../lib/group-commit.js';
import { createLogger } from '../../lib/log.js';
import { createMetrics } from '../../lib/metrics.js';
import { createErp, depthOf, MAX_PAYLOAD_DEPTH } from './app.js';
import { ErpStore } from './store.js';
import { Throttle } from './throttle.js';

/** `{"x":[[…[1]…]]}`: an object holding `arrays` nested arrays, `arrays` + 1 levels in all. */
const nested = (arrays: number) => `{"x":${'['.repeat(arrays)}1${']'.repeat(arrays)}}`;

describe('ERP sandbox API', () => {
  const withErp = async (run: (erp: ReturnType<typeof createErp>) => Promise<void>) => {
    const dir = mkdtempSync(join(tmpdir(), 'erp-app-'));
    const store = new ErpStore(join(dir, 'erp.db'));
    groupCommit(store.db);
    try {
      await run(
        createErp({
          store,
          throttle: new Throttle(1000),
          costs: { order: 10, 'stock-movement': 1 },
          blockedDomains: [],
          log: createLogger('erp-test', 'silent'),
          metrics: createMetrics('erp-test'),
        }),
      );
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  };
  const post = (erp: ReturnType<typeof createErp>, operationId: string, payload: string) =>
    erp.app.request('/erp/records', { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"operationId":"${operationId}","kind":"order","payload":${payload}}` });

  it('refuses a payload nested past the limit with a 400 problem, charging and recording nothing; at the limit it records', async () => {
    await withErp(async (erp) => {
      // 5,000 levels (10 KB) made JSON.stringify overflow the stack in the store: a 500, with capacity charged.
      for (const arrays of [MAX_PAYLOAD_DEPTH, 5000, 100_000]) {
        const res = await post(erp, `deep-${arrays}`, nested(arrays));
        assert.equal(res.status, 400, `${arrays} nested arrays`);
        assert.equal(res.headers.get('content-type'), 'application/problem+json');
        assert.match(await res.text(), new RegExp(`deeper than ${MAX_PAYLOAD_DEPTH} levels`));
      }
      const before = erp.snapshot();
      assert.equal(before.records.order ?? 0, 0);
      assert.equal(before.seconds.reduce((sum, s) => sum + s.units, 0), 0, 'no capacity charged');

      const ok = await post(erp, 'at-limit', nested(MAX_PAYLOAD_DEPTH - 1));
      assert.equal(ok.status, 201);
      assert.equal(erp.snapshot().accepted, 1);
    });
  });

  it('answers 400 for an operation id it would never accept, 404 for one it has not seen', async () => {
    await withErp(async (erp) => {
      for (const id of ['x'.repeat(129), 'a%00b', 'a%20b']) {
        const res = await erp.app.request(`/erp/records/${id}`);
        assert.equal(res.status, 400, id.slice(0, 20));
        assert.equal(res.headers.get('content-type'), 'application/problem+json');
      }
      const missing = await erp.app.request('/erp/records/order:none');
      assert.equal(missing.status, 404);
    });
  });

  it('measures depth without recursion', () => {
    assert.equal(depthOf(1, 32), 0);
    assert.equal(depthOf({}, 32), 1);
    assert.equal(depthOf({ a: [{ b: 1 }] }, 32), 3);
    assert.equal(depthOf(JSON.parse(nested(200_000)), 32), 33, 'stops one past the limit');
  });
});
