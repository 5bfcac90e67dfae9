// The MQTT 3.1.1 rules checked on raw bytes, case by case; the conformance suite
// (test/broker-conformance.test.ts) checks the broker's answers to the same cases on the wire.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connectPacket, publishPacket, subscribePacket } from '../test/support/mqtt-raw.js';
import { MAX_FILTERS_PER_PACKET, checkConnect, checkFilters, checkPublish, stringProblem } from './conformance.js';

/** The body of a packet: what follows its fixed header. */
const body = (packet: Buffer) => {
  let i = 1;
  while (packet[i]! & 0x80) i++;
  return packet.subarray(i + 1);
};
const connect = (fields: Parameters<typeof connectPacket>[0]) => checkConnect(body(connectPacket(fields)));

test('UTF-8 strings: well-formed, without U+0000', () => {
  assert.equal(stringProblem(Buffer.from('woodytoys/stock/é/😀')), undefined);
  assert.equal(stringProblem(Buffer.from('\uFFFD')), undefined, 'a real U+FFFD is valid');
  assert.equal(stringProblem(Buffer.from([0x61, 0xff])), 'ill-formed UTF-8');
  assert.equal(stringProblem(Buffer.from([0xc0, 0xaf])), 'ill-formed UTF-8', 'overlong');
  assert.equal(stringProblem(Buffer.from([0xed, 0xa0, 0x80])), 'ill-formed UTF-8', 'an encoded surrogate');
  assert.equal(stringProblem(Buffer.from([0xf0, 0x90, 0x80])), 'ill-formed UTF-8', 'truncated');
  assert.equal(stringProblem(Buffer.from('a\u0000b')), 'U+0000');
});

test('CONNECT: name and level agree, MQTT 5 refused with the reason, client id, will, user name', () => {
  assert.equal(connect({ clientId: 'c' }), undefined);
  assert.equal(connect({ clientId: 'c', protocolName: 'MQIsdp', level: 3 }), undefined);
  assert.equal(connect({ clientId: 'c', clean: true, username: 'u', password: Buffer.from([0xff]) }), undefined, 'a password is binary');
  assert.equal(connect({ clientId: '', clean: true }), undefined);
  assert.deepEqual(connect({ clientId: '', clean: false }), { reason: 'an empty client id needs a clean session', returnCode: 2, protocolLevel: 4, clientId: '' });
  assert.equal(connect({ clientId: 'c', protocolName: 'MQTT', level: 3 })?.returnCode, 1);
  assert.equal(connect({ clientId: 'c', protocolName: 'MQIsdp', level: 4 })?.returnCode, 1);
  assert.equal(connect({ clientId: 'c', level: 6 })?.returnCode, 1);
  const v5 = connect({ clientId: 'display-7', level: 5 });
  assert.equal(v5?.returnCode, 1);
  assert.equal(v5?.clientId, 'display-7');
  assert.match(v5!.reason, /MQTT 5 is not supported: this broker speaks MQTT 3\.1\.1 .*Mosquitto .*alternative for MQTT 5/);
  assert.deepEqual(connect({ clientId: 'c', protocolName: 'MQTX' }), { reason: 'unknown protocol name "MQTX"', protocolLevel: 4 });
  assert.equal(connect({ clientId: Buffer.from([0x63, 0xff]) })?.reason, 'ill-formed UTF-8 in the client id');
  assert.equal(connect({ clientId: 'c', will: { topic: 'a/+', payload: 'x' } })?.reason, "a wildcard in a topic name (the will's)");
  assert.equal(connect({ clientId: 'c', will: { topic: 'a/\u0000', payload: 'x' } })?.reason, "U+0000 in a topic name (the will's)");
  assert.equal(connect({ clientId: 'c', will: { topic: 'a/b', payload: Buffer.from([0xff]) } }), undefined, 'a will payload is binary');
  assert.equal(connect({ clientId: 'c', username: Buffer.from([0xff]), password: 'p' })?.reason, 'ill-formed UTF-8 in the user name');
  assert.equal(checkConnect(Buffer.from([0, 4, 0x4d]))?.reason, 'malformed CONNECT');
});

test('PUBLISH topic names and SUBSCRIBE / UNSUBSCRIBE filters', () => {
  assert.equal(checkPublish(body(publishPacket({ topic: 'a/b', payload: 'x' }))), undefined);
  // Past the ASCII fast path: well-formed UTF-8 is a valid topic name.
  assert.equal(checkPublish(body(publishPacket({ topic: 'café/ü/日本', payload: 'x' }))), undefined);
  assert.equal(checkPublish(Buffer.from([0, 5, 0x61, 0x2f, 0x62]))?.reason, 'malformed PUBLISH', 'a topic longer than the packet');
  // QoS 1 and 2 need two bytes after the topic for the packet identifier, within the announced length.
  const noId = Buffer.from([0, 3, 0x61, 0x2f, 0x62]);
  assert.equal(checkPublish(noId, 0, noId.length), undefined, 'QoS 0 has no identifier');
  assert.equal(checkPublish(noId, 1, noId.length)?.reason, 'malformed PUBLISH');
  assert.equal(checkPublish(noId, 2, noId.length + 1)?.reason, 'malformed PUBLISH', 'one byte short');
  assert.equal(checkPublish(noId, 1, noId.length + 2), undefined, 'the identifier follows, past the kept head');
  assert.equal(checkPublish(Buffer.from([0, 3, 0xc3, 0xa9, 0x2f]), 1, 5)?.reason, 'malformed PUBLISH', 'the same past the ASCII fast path');
  for (const [topic, reason] of [
    [Buffer.from([0x61, 0xff]), 'ill-formed UTF-8 in a topic name'],
    ['a/\u0000', 'U+0000 in a topic name'],
    ['a/+', 'a wildcard in a topic name'],
    ['a/#', 'a wildcard in a topic name'],
    ['', 'an empty topic name'],
  ] as const) {
    assert.equal(checkPublish(body(publishPacket({ topic, payload: 'x' })))?.reason, reason);
  }
  assert.equal(checkFilters(body(subscribePacket(['a/+/b', 'c/#'])), true), undefined);
  const many = (n: number) => Array.from({ length: n }, (_, i) => `woodytoys/public/${i}`);
  assert.equal(checkFilters(body(subscribePacket(many(MAX_FILTERS_PER_PACKET))), true), undefined);
  assert.equal(checkFilters(body(subscribePacket(many(MAX_FILTERS_PER_PACKET + 1))), true)?.reason, `more than ${MAX_FILTERS_PER_PACKET} topic filters in one packet`);
  assert.equal(checkFilters(body(subscribePacket(['a/#', Buffer.from([0xc3])])), true)?.reason, 'ill-formed UTF-8 in a topic filter');
  assert.equal(checkFilters(body(subscribePacket(['a/\u0000'])), true)?.reason, 'U+0000 in a topic filter');
  // UNSUBSCRIBE: packet id, then filters without a QoS byte.
  const unsubscribe = Buffer.from([0, 1, 0, 3, 0x61, 0x2f, 0x00]);
  assert.equal(checkFilters(unsubscribe, false)?.reason, 'U+0000 in a topic filter');
});
