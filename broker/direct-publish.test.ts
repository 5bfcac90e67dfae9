// Publishes that skip Aedes: which ones may (their fields, Aedes's topic rules), and the check for
// other subscribers, following subscriptions made and removed on a real Aedes. The whole path,
// against real clients, is in test/broker-conformance.test.ts and test/broker-write-behind.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Aedes } from 'aedes';
import { subscriberCheck, type ParsedPublish } from './aedes-adapter.js';
import { directByFields, pubackFor, topicRefusal } from './direct-publish.js';

const publish = (fields: Partial<ParsedPublish>): ParsedPublish => ({ cmd: 'publish', topic: 'a/b', payload: Buffer.alloc(0), qos: 1, retain: false, dup: false, messageId: 1, ...fields });

describe('direct publishes', () => {
  it('are QoS 0 or 1, not retained, without MQTT 5 properties', () => {
    assert.equal(directByFields(publish({})), true);
    assert.equal(directByFields(publish({ qos: 0 })), true);
    assert.equal(directByFields(publish({ qos: 2 })), false);
    assert.equal(directByFields(publish({ retain: true })), false, 'Aedes stores retained messages');
    assert.equal(directByFields(publish({ properties: {} })), false);
  });

  it('refuse the topics Aedes refuses', () => {
    assert.equal(topicRefusal('woodytoys/stock/reserved', 100), undefined);
    assert.match(topicRefusal('', 100)!, /empty/);
    assert.match(topicRefusal('a/#', 100)!, /#/);
    assert.match(topicRefusal('a/+/b', 100)!, /\+/);
    assert.equal(topicRefusal('a/b/c', 3), undefined);
    assert.match(topicRefusal('a/b/c/d', 3)!, /too many levels/);
  });

  it('are acknowledged with a four-byte PUBACK', () => {
    assert.deepEqual([...pubackFor(0x1234)], [0x40, 0x02, 0x12, 0x34]);
    assert.deepEqual([...pubackFor(65535)], [0x40, 0x02, 0xff, 0xff]);
  });

  it('see normal subscribers as they come and go', async () => {
    const broker = await Aedes.createBroker();
    try {
      const has = subscriberCheck(broker);
      assert.equal(has('woodytoys/stock/reserved'), false);
      const deliver = (_packet: unknown, cb: () => void) => cb();
      await new Promise<void>((resolve) => broker.subscribe('woodytoys/#', deliver, resolve));
      assert.equal(has('woodytoys/stock/reserved'), true, 'a new subscription is seen at once');
      assert.equal(has('other/topic'), false);
      await new Promise<void>((resolve) => broker.unsubscribe('woodytoys/#', deliver, resolve));
      assert.equal(has('woodytoys/stock/reserved'), false, 'and its removal');
    } finally {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    }
  });
});
