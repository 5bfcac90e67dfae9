// The broker's live figures: each shared subscription by its group and filter, with the names the
// dashboard and displays read (inFlight, not the group queue's own inflight).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { brokerFigures } from './stats.js';

it('the broker figures name each group and filter, its backlog, messages in flight and members', () => {
  const figures = brokerFigures(7, [
    { share: '$share/order-workers/woodytoys/stock/reserved', depth: 120, inflight: 64, members: 2, online: 1 },
    { share: '$share/stock/woodytoys/orders/+/created', depth: 0, inflight: 0, members: 1, online: 1 },
  ]);
  assert.deepEqual(figures, {
    clients: 7,
    groups: [
      { group: 'order-workers', filter: 'woodytoys/stock/reserved', depth: 120, inFlight: 64, members: 2, online: 1 },
      { group: 'stock', filter: 'woodytoys/orders/+/created', depth: 0, inFlight: 0, members: 1, online: 1 },
    ],
  });
});
