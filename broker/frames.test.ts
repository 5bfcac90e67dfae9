// MQTT framing off raw bytes: packets split anywhere, several in one chunk, an oversized or
// malformed length refused as soon as its header is in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connectHeader, connectPacket, publishPacket, subscribePacket } from '../test/support/mqtt-raw.js';
import { CONNECT, FrameReader, PUBLISH, SUBSCRIBE } from './frames.js';

test('frames come out whole however the bytes are cut, with the heads the rules need', () => {
  const stream = Buffer.concat([
    connectPacket({ clientId: 'c1' }),
    publishPacket({ topic: 'a/b', payload: Buffer.alloc(70_000, 1) }),
    subscribePacket(['x/#']),
    Buffer.from([0xc0, 0x00]), // PINGREQ
  ]);
  for (const cut of [1, 2, 3, 7, 100, 65_536, stream.length]) {
    const reader = new FrameReader(1 << 20);
    const frames = [];
    for (let o = 0; o < stream.length; o += cut) {
      const { frames: got, problem } = reader.push(stream.subarray(o, o + cut));
      assert.equal(problem, undefined);
      frames.push(...got);
    }
    assert.deepEqual(
      frames.map((f) => [f.type, f.length, f.head.length]),
      [
        [CONNECT, connectPacket({ clientId: 'c1' }).length - 2, connectPacket({ clientId: 'c1' }).length - 2],
        // a PUBLISH keeps its topic and what follows, up to 2 + 65,535 bytes, never its whole payload
        [PUBLISH, 2 + 3 + 2 + 70_000, 2 + 0xffff],
        [SUBSCRIBE, 2 + 2 + 3 + 1, 8],
        [12, 0, 0],
      ],
      `cut every ${cut} bytes`,
    );
    assert.equal(frames[1]!.head.subarray(2, 5).toString(), 'a/b');
  }
});

test('a packet over the limit is refused from its fixed header alone', () => {
  const reader = new FrameReader(1024);
  assert.deepEqual(reader.push(connectHeader(268_435_455)), { frames: [], problem: 'a packet of 268435455 bytes is over the limit of 1024' });
  const exact = new FrameReader(1024).push(Buffer.concat([connectHeader(1024), Buffer.alloc(1024)]));
  assert.equal(exact.problem, undefined, 'the limit itself is allowed');
  assert.equal(exact.frames.length, 1);
  assert.equal(new FrameReader(1 << 28).push(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01])).problem, 'malformed remaining length');
});
