// Stored PUBLISH packets as members receive them: what broker/publish-packet.ts stamps into the
// stored bytes must be, byte for byte, what mqtt-packet itself encodes for the same delivery, for
// every shape the fixed header can take (QoS 0 and 1, DUP, topic lengths, remaining lengths of one
// to four bytes, payloads past 16 KiB and 2 MiB).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket from 'mqtt-packet';
import { asQos0, encodePublish, qosOf, stampPublish } from './publish-packet.js';

/** mqtt-packet's own encoding of a delivery, the reference. */
const reference = (topic: string, payload: Buffer, qos: 0 | 1, messageId?: number, dup = false) =>
  mqttPacket.generate({ cmd: 'publish', topic, payload, qos, dup, retain: false, ...(qos > 0 ? { messageId: messageId ?? 0 } : {}) });

const topics = ['a', 'woodytoys/stock/reserved', 'woodytoys/stock/levels/ünïcødé-🪵', `deep/${'t'.repeat(300)}`, 'x'.repeat(65535)];
// Fixed header + topic + packet identifier around the remaining length's boundaries: 127/128
// (one or two bytes), 16383/16384 (two or three), 2097151/2097152 (three or four); and past 16 KiB.
const remainingLengths = [127, 128, 16_383, 16_384, 20 * 1024, 2_097_151, 2_097_152, 3 * 1024 * 1024];
const SHORT_TOPIC = 'woodytoys/orders/created';
const payloadsFor = (topic: string, qos: 0 | 1) =>
  [0, 1, 256, ...remainingLengths.map((r) => r - 2 - Buffer.byteLength(topic) - (qos ? 2 : 0))].filter((size) => size >= 0);

/** Bytes that are not all the same, so a copy from the wrong offset shows. */
const pattern = Buffer.alloc(4 * 1024 * 1024);
for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 31 + 7) & 0xff;
const payloadOf = (size: number) => pattern.subarray(0, size);

const messageIds = [1, 0x00ff, 0x0100, 0x1234, 65535];

describe('stored PUBLISH packets', () => {
  it('are stamped with a packet identifier and DUP flag when sent, and can go out as QoS 0', () => {
    const stored = encodePublish('a/b', Buffer.from('hello'), 1);
    const out = Buffer.alloc(stored.length * 2);
    const at = stampPublish(out, 0, stored, 0x1234, false);
    stampPublish(out, at, stored, 7, true);
    // 0x32: PUBLISH, QoS 1; then remaining length, topic "a/b", packet identifier, payload.
    assert.deepEqual([...out.subarray(0, stored.length)], [0x32, 12, 0, 3, 0x61, 0x2f, 0x62, 0x12, 0x34, ...Buffer.from('hello')]);
    assert.equal(out[stored.length], 0x3a, 'DUP set on the resend');
    assert.equal(out.readUInt16BE(stored.length + 7), 7);
    assert.deepEqual([...stored.subarray(7, 9)], [0, 0], 'the stored bytes are left as they were');
    const qos0 = asQos0(stored);
    assert.deepEqual([...qos0], [0x30, 10, 0, 3, 0x61, 0x2f, 0x62, ...Buffer.from('hello')]);
  });

  it('stamped, equal mqtt-packet\'s encoding byte for byte (QoS 1, DUP or not, every remaining-length size)', () => {
    let checked = 0;
    for (const topic of [topics[0]!, SHORT_TOPIC, topics[2]!, topics[3]!]) {
      for (const size of payloadsFor(topic, 1)) {
        const payload = payloadOf(size);
        const stored = encodePublish(topic, payload, 1);
        assert.ok(stored.equals(reference(topic, payload, 1, 0)), `stored, ${topic.length}-char topic, ${size} B`);
        assert.equal(qosOf(stored), 1);
        // Two deliveries of one pass in one buffer, the second a resend: offsets matter.
        for (const [i, messageId] of messageIds.entries()) {
          const dup = i % 2 === 1;
          const out = Buffer.alloc(1 + stored.length * 2);
          let at = stampPublish(out, 1, stored, messageId, false);
          at = stampPublish(out, at, stored, messageId, dup);
          assert.equal(at, out.length);
          assert.ok(out.subarray(1, 1 + stored.length).equals(reference(topic, payload, 1, messageId)), `${size} B, id ${messageId}`);
          assert.ok(out.subarray(1 + stored.length).equals(reference(topic, payload, 1, messageId, dup)), `${size} B, id ${messageId}, dup ${dup}`);
          checked++;
        }
        assert.equal(stored.readUInt16BE(stored.length - size - 2), 0, 'the stored packet keeps identifier 0');
      }
    }
    assert.ok(checked > 100);
  });

  it('turned into QoS 0, equal mqtt-packet\'s QoS 0 encoding byte for byte', () => {
    for (const topic of [topics[0]!, SHORT_TOPIC, topics[2]!, topics[3]!]) {
      for (const size of payloadsFor(topic, 0)) {
        const payload = payloadOf(size);
        const expected = reference(topic, payload, 0);
        assert.ok(asQos0(encodePublish(topic, payload, 1)).equals(expected), `from QoS 1, ${topic.length}-char topic, ${size} B`);
        const stored = encodePublish(topic, payload, 0);
        assert.ok(stored.equals(expected), `stored QoS 0, ${size} B`);
        assert.equal(qosOf(stored), 0);
      }
    }
  });

  it('take the longest topic MQTT allows (65535 bytes)', () => {
    const topic = topics[4]!;
    const payload = payloadOf(300);
    const stored = encodePublish(topic, payload, 1);
    const out = Buffer.alloc(stored.length);
    stampPublish(out, 0, stored, 65535, true);
    assert.ok(out.equals(reference(topic, payload, 1, 65535, true)));
    assert.ok(asQos0(stored).equals(reference(topic, payload, 0)));
  });
});
