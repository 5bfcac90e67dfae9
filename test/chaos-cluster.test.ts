// The chaos harness's short run (bench/chaos.ts) with the broker as two nodes on one Redis
// (BROKER_STORE=redis), the services and workers connected to the nodes in turn: kill -9 of each
// node under load (the members connected to it come back with their sessions, a worker's
// unacknowledged orders meanwhile claimed by the member on the other node), SIGTERM to each node,
// an outage of both, kill -9 of a worker and of the stock service. Nothing accepted may be lost or
// applied twice: the same checks as on one node.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatReport, runChaos } from '../bench/chaos.js';
import { requireProgram } from './support/programs.js';

describe('chaos on a two-node broker cluster (short run)', { skip: requireProgram('redis-server', 'redis-server') }, () => {
  it('loses nothing and applies nothing twice through node crashes, node stops and an outage of both', { timeout: 300_000 }, async (t) => {
    const report = await runChaos({
      brokerNodes: 2,
      workers: 2,
      ordersPerSecond: 10,
      movementsPerSecond: 20,
      importSize: 10,
      gapMs: 1500,
      downMs: 500,
      kills: ['broker-2', 'worker-1', 'stock', 'broker-1'],
      outageMs: 2000,
      erpFaultMs: 0,
      terms: ['broker-1', 'orders', 'broker-2'],
      settleTimeoutMs: 90_000,
      log: (line) => t.diagnostic(line),
    });
    t.diagnostic(`\n${formatReport(report)}`);
    for (const check of report.checks) assert.ok(check.ok, `${check.name}: ${check.detail}`);
    assert.deepEqual(report.faults.filter((f) => f.kind === 'kill -9').map((f) => f.target), ['broker-2', 'worker-1', 'stock', 'broker-1']);
    assert.deepEqual(report.faults.filter((f) => f.kind === 'SIGTERM').map((f) => [f.target, f.exitCode]), ['broker-1', 'orders', 'broker-2'].map((n) => [n, 0]));
    assert.ok(report.outage, 'both nodes were down together');
    assert.ok(report.orders.accepted >= 100, `a few hundred orders accepted (${report.orders.accepted})`);
    assert.equal(report.orders.pending, 0);
    assert.equal(report.erp.lostEffects, 0);
    assert.equal(report.erp.extraEffects, 0);
    assert.equal(report.orders.duplicated, 0);
  });
});
