// The per-address policy of broker/limits.ts; the limits themselves, against a running broker, are
// in test/broker-limits.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { overAddressLimit } from './limits.js';

test('one more connection from an address: refused past either limit, naming the setting', () => {
  const limits = { maxConnectionsPerAddress: 4, maxConnectingPerAddress: 2 };
  assert.equal(overAddressLimit({ open: 0, connecting: 0 }, limits), undefined);
  assert.equal(overAddressLimit({ open: 3, connecting: 1 }, limits), undefined);
  assert.match(overAddressLimit({ open: 4, connecting: 0 }, limits)!, /^4 connections from this address already \(BROKER_MAX_CONNECTIONS_PER_ADDRESS\)$/);
  assert.match(overAddressLimit({ open: 2, connecting: 2 }, limits)!, /still before their CONNECT \(BROKER_MAX_CONNECTING_PER_ADDRESS\)$/);
});
