// The bytes of a group queue's deliveries, three ways side by side in one run (issue 15: should
// mqtt-packet encode each delivery instead of broker/publish-packet.ts stamping stored bytes?):
//   - stamp: what the broker does — the stored PUBLISH (encoded once by mqtt-packet when queued)
//     copied into one buffer per pass with its packet identifier and DUP flag stamped in;
//   - generate: mqtt-packet's generate() per delivery with its packet identifier, then one
//     Buffer.concat per pass (the same one write per member a pass);
//   - writeToStream: mqtt-packet's writeToStream() per delivery into a stream that counts the
//     chunks (what Aedes does for its own deliveries); writeToStream corks the stream and uncorks
//     it on the next tick, so each pass waits for that tick.
// A pass hands a member 32 deliveries (the default in-flight window). Rounds alternate between the
// ways; prints deliveries per second (median of the rounds) and each way's ratio to stamping.
//
//   npm run bench:publish-encoding   (BENCH_DELIVERIES=200000 BENCH_PAYLOAD_BYTES=256,1024,20480,3145728 BENCH_ROUNDS=5)
import { Writable } from 'node:stream';
import mqttPacket from 'mqtt-packet';
import { encodePublish, stampPublish } from '../broker/publish-packet.js';
import { median } from './figures.js';

const DELIVERIES = Number(process.env.BENCH_DELIVERIES ?? 200_000);
const PAYLOADS = (process.env.BENCH_PAYLOAD_BYTES ?? '256,1024,20480,3145728').split(',').map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const PASS = 32;
const TOPIC = 'woodytoys/stock/reserved';
/** Bytes encoded per measured run and payload size, so a 3 MiB payload does not run for minutes. */
const BYTE_BUDGET = 2 * 1024 * 1024 * 1024;

interface Way {
  name: string;
  /** Encodes `count` deliveries of `payload`, a pass at a time; returns the bytes produced (so nothing is optimised away). */
  run(payload: Buffer, count: number): number | Promise<number>;
}

const stamp: Way = {
  name: 'stamp (ours)',
  run(payload, count) {
    const stored = encodePublish(TOPIC, payload, 1);
    let bytes = 0;
    let id = 1;
    for (let done = 0; done < count; done += PASS) {
      const n = Math.min(PASS, count - done);
      const out = Buffer.allocUnsafe(stored.length * n);
      let at = 0;
      for (let i = 0; i < n; i++) at = stampPublish(out, at, stored, (id = id >= 65535 ? 1 : id + 1), false);
      bytes += out.length;
    }
    return bytes;
  },
};

const generate: Way = {
  name: 'mqtt-packet generate',
  run(payload, count) {
    let bytes = 0;
    let id = 1;
    for (let done = 0; done < count; done += PASS) {
      const n = Math.min(PASS, count - done);
      const parts: Buffer[] = [];
      for (let i = 0; i < n; i++) {
        id = id >= 65535 ? 1 : id + 1;
        parts.push(mqttPacket.generate({ cmd: 'publish', topic: TOPIC, payload, qos: 1, dup: false, retain: false, messageId: id }));
      }
      bytes += Buffer.concat(parts).length;
    }
    return bytes;
  },
};

/** A stream that only counts what reaches it, as a corked socket would hand it to the kernel. */
class Sink extends Writable {
  bytes = 0;
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: () => void) {
    for (const { chunk } of chunks) this.bytes += chunk.length;
    callback();
  }
  override _write(chunk: Buffer, _encoding: string, callback: () => void) {
    this.bytes += chunk.length;
    callback();
  }
}

const writeToStream: Way = {
  name: 'mqtt-packet writeToStream',
  async run(payload, count) {
    const sink = new Sink({ highWaterMark: Number.MAX_SAFE_INTEGER });
    let id = 1;
    for (let done = 0; done < count; done += PASS) {
      const n = Math.min(PASS, count - done);
      for (let i = 0; i < n; i++) {
        id = id >= 65535 ? 1 : id + 1;
        mqttPacket.writeToStream({ cmd: 'publish', topic: TOPIC, payload, qos: 1, dup: false, retain: false, messageId: id }, sink);
      }
      await new Promise(process.nextTick);
    }
    return sink.bytes;
  },
};

const ways = [stamp, generate, writeToStream];

console.log(`deliveries per second, ${ROUNDS} rounds alternating, passes of ${PASS}; node ${process.version}`);
console.log(['payload B', 'deliveries', ...ways.map((w) => w.name), ...ways.slice(1).map((w) => `${w.name} / stamp`)].join('\t'));
for (const size of PAYLOADS) {
  const payload = Buffer.alloc(size, 'x');
  const count = Math.max(PASS, Math.min(DELIVERIES, Math.floor(BYTE_BUDGET / ROUNDS / (size + 64))));
  const rates = new Map<Way, number[]>(ways.map((w) => [w, []]));
  for (const way of ways) await way.run(payload, Math.min(count, 10_000)); // warm-up (JIT)
  for (let round = 0; round < ROUNDS; round++) {
    for (const way of ways) {
      const start = process.hrtime.bigint();
      const bytes = await way.run(payload, count);
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      if (bytes < count * size) throw new Error(`${way.name} produced ${bytes} bytes for ${count} deliveries of ${size} B`);
      rates.get(way)!.push(count / seconds);
    }
  }
  const med = ways.map((w) => median(rates.get(w)!));
  console.log([size, count, ...med.map((r) => Math.round(r)), ...med.slice(1).map((r) => (r / med[0]!).toFixed(2))].join('\t'));
}
