// A bulk stock import end to end: 20,000 movements as NDJSON → stock (stored, outbox) → broker →
// stock workers → ERP → stock (progress, levels). Every movement must reach the ERP exactly once.
// On our broker, and on Mosquitto (the design's alternative, with the repo's configuration).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { eventually } from '../harness/process.js';
import { requireProgram } from './support/programs.js';
import { ADMIN_KEY, getJson, getStock, startStack, type BrokerKind, type Stack } from '../harness/stack.js';

interface Progress {
  id: string;
  status: string;
  total: number;
  done: number;
  failed: number;
}

const PRODUCTS = ['wooden-train', 'wooden-car', 'fire-truck', 'marble-run', 'tangram', 'chess-set', 'xylophone', 'yo-yo', 'tea-set', 'biplane'];
const START = 100_000;

/** A fixed pseudo-random sequence, so a failure can be replayed. */
function movements(n: number): { productId: string; delta: number }[] {
  let seed = 42;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  return Array.from({ length: n }, () => {
    const delta = Math.floor(next() * 13) - 4; // -4 … 8
    return { productId: PRODUCTS[Math.floor(next() * PRODUCTS.length)]!, delta: delta === 0 ? 1 : delta };
  });
}

describe('a bulk stock import of 20,000 movements', () => importCases('aedes', 20_000));
// The same on Mosquitto, smaller: what is checked there is the path through another broker (it has no
// group backlog to report, so the workers pace on their own estimate), not its throughput.
describe('a bulk stock import of 2,000 movements on Mosquitto', { skip: requireProgram('mosquitto') }, () => importCases('mosquitto', 2_000));

class Stalled extends Error {}

function importCases(broker: BrokerKind, count: number) {
  let stack: Stack;
  before(async () => {
    stack = await startStack({
      broker,
      workers: 2,
      erpCapacityRu: 200_000,
      workerEnv: { WORKER_SUBSCRIPTION: 'shared' },
      stock: Object.fromEntries(PRODUCTS.map((p) => [p, START])),
    });
  });
  after(async () => {
    await stack?.stop();
  });

  it('records every movement in the ERP once, shows progress, and ends with the levels they imply', async () => {
    const batch = movements(count);
    const res = await fetch(`${stack.urls.stock}/api/stock/imports`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', 'x-api-key': ADMIN_KEY },
      body: batch.map((m) => JSON.stringify(m)).join('\n') + '\n',
    });
    assert.equal(res.status, 202);
    const accepted = (await res.json()) as Progress;
    assert.equal(res.headers.get('location'), `/api/stock/imports/${accepted.id}`);
    assert.equal(accepted.total, count);
    assert.equal(accepted.status, 'processing');

    // Waits while the import moves: a stall fails within a minute, however loaded the machine, and a
    // slow machine is not taken for a stall (the overall bound is only a backstop).
    let last = accepted;
    let movedAt = Date.now();
    const progress = await eventually(
      async () => {
        const p = await getJson<Progress>(`${stack.urls.stock}/api/stock/imports/${accepted.id}`);
        assert.ok(p.done >= last.done, 'progress never goes back');
        assert.equal(p.status === 'processing', p.done + p.failed < p.total);
        if (p.done + p.failed > last.done + last.failed) movedAt = Date.now();
        else if (Date.now() - movedAt > 60_000) throw new Stalled(`the import stalled at ${p.done + p.failed}/${p.total} for 60 s`);
        last = p;
        return p.done + p.failed === p.total && p;
      },
      { timeoutMs: 400_000, intervalMs: 250, what: 'the import to finish', fatal: (err) => err instanceof Stalled },
    );
    assert.deepEqual({ status: progress.status, done: progress.done, failed: progress.failed }, { status: 'completed', done: count, failed: 0 });

    const stats = await getJson<{ records: Record<string, number> }>(`${stack.urls.erp}/erp/stats`);
    assert.equal(stats.records['stock-movement'], count, 'each movement recorded once (the ERP deduplicates by operation id)');
    for (const line of [1, 2, 777, count / 2, count - 1, count]) {
      const record = await getJson<{ operationId: string; payload: { delta: number; productId: string } }>(`${stack.urls.erp}/erp/records/movement:${accepted.id}:${line}`);
      assert.deepEqual({ productId: record.payload.productId, delta: record.payload.delta }, batch[line - 1]);
    }

    const expected = new Map(PRODUCTS.map((p) => [p, START]));
    for (const m of batch) expected.set(m.productId, expected.get(m.productId)! + m.delta);
    for (const [productId, available] of expected) {
      assert.equal((await getStock(stack.urls.stock, productId)).available, available, productId);
    }
  });
}
