// The QoS 1 judgement of the crash tests (deliveryFaults): what counts as lost, as a duplicate, and
// which redeliveries the contract allows.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deliveryFaults, type Connection, type Delivery } from './group-deliveries.js';

const up: Connection = { node: 'b', broken: false };
const broke: Connection = { node: 'a', broken: true };
const at = (message: string, client: string, connection: Connection, when = 0): Delivery => ({ message, client, connection, at: when });

describe('deliveryFaults', () => {
  const published = new Set(['m1', 'm2', 'm3']);

  it('finds an acknowledged message nobody received, and one nobody published', () => {
    const faults = deliveryFaults([at('m1', 'x', up), at('zz', 'x', up)], ['m1', 'm2'], published);
    assert.deepEqual(faults.lost, ['m2']);
    assert.deepEqual(faults.unknown, ['zz']);
    assert.deepEqual(faults.duplicated, []);
  });

  it('allows a message again after a delivery on a connection that broke, to another member or the same one', () => {
    const faults = deliveryFaults([at('m1', 'x', broke), at('m1', 'y', up), at('m2', 'x', broke), at('m2', 'x', up)], ['m1', 'm2'], published);
    assert.deepEqual(faults, { lost: [], duplicated: [], unknown: [] });
  });

  it('counts a message delivered again after a delivery on a connection that stayed up', () => {
    const faults = deliveryFaults([at('m1', 'x', up), at('m1', 'y', up), at('m2', 'y', up), at('m2', 'x', broke)], ['m1', 'm2'], published);
    assert.deepEqual(faults.duplicated, ['m1 → x@b, y@b', 'm2 → y@b, x@a (broke)']);
  });

  it('lets the caller widen what is uncertain (deliveries during a store outage)', () => {
    const deliveries = [at('m1', 'x', up, 10), at('m1', 'x', up, 30)];
    assert.equal(deliveryFaults(deliveries, ['m1'], published).duplicated.length, 1);
    assert.equal(deliveryFaults(deliveries, ['m1'], published, (d) => d.at < 20).duplicated.length, 0);
  });

  it('neither requires nor limits what was never acknowledged to its publisher (it would send it again)', () => {
    assert.deepEqual(deliveryFaults([], [], published), { lost: [], duplicated: [], unknown: [] });
    assert.deepEqual(deliveryFaults([at('m3', 'x', up), at('m3', 'x', up)], [], published), { lost: [], duplicated: [], unknown: [] });
    assert.deepEqual(deliveryFaults([at('zz', 'x', up)], [], published).unknown, ['zz']);
  });
});
