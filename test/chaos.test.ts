// The chaos harness's short run (bench/chaos.ts; `npm run chaos` is the long one): real processes
// behind nginx under a steady load of orders and stock imports, each kind of process killed with
// kill -9 and restarted, a short broker outage, an ERP that is slow and answers 429 and 500 at
// random, and SIGTERM to every process. Nothing accepted may be lost or applied twice.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatReport, runChaos } from '../bench/chaos.js';

describe('chaos (short run)', () => {
  it('loses nothing and applies nothing twice through crashes, an outage, ERP faults and SIGTERMs', { timeout: 480_000 }, async (t) => {
    const report = await runChaos({
      ordersPerSecond: 10,
      movementsPerSecond: 20,
      importSize: 10,
      gapMs: 1500,
      downMs: 500,
      outageMs: 3000,
      erpFaultMs: 5000,
      erpFaults: { latencyMs: 20, errorRate: 0.5, throttleRate: 0.2 },
      faultMaxAttempts: 2,
      settleTimeoutMs: 90_000,
      log: (line) => t.diagnostic(line),
    });
    t.diagnostic(`\n${formatReport(report)}`);
    for (const check of report.checks) assert.ok(check.ok, `${check.name}: ${check.detail}`);
    // Every kind of process was killed and sent SIGTERM, and came back.
    assert.deepEqual(report.faults.filter((f) => f.kind === 'kill -9').map((f) => f.target), ['worker-1', 'orders', 'stock', 'broker', 'erp']);
    assert.deepEqual(report.faults.filter((f) => f.kind === 'SIGTERM').map((f) => [f.target, f.exitCode]), ['orders', 'stock', 'catalog', 'worker-1', 'broker', 'erp'].map((n) => [n, 0]));
    assert.ok(report.orders.accepted >= 100, `a few hundred orders accepted (${report.orders.accepted})`);
    assert.equal(report.orders.pending, 0);
    assert.equal(report.erp.lostEffects, 0);
    assert.equal(report.erp.extraEffects, 0);
    assert.equal(report.orders.duplicated, 0);
    // The ERP faults pushed some operations past their attempt limit: dead letters, with reasons.
    assert.ok(report.erpFaults && report.erpFaults.gaveUpOrders + report.erpFaults.failedMovements > 0, 'some operations gave up during the ERP faults');
    assert.ok((report.deadLetters['order-workers'] ?? 0) + (report.deadLetters['stock-workers'] ?? 0) > 0);
  });
});
