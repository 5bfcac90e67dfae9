// A backlog that does not fit in memory: BENCH_BACKLOG_MESSAGES (1,000,000) messages of
// BENCH_BACKLOG_BYTES (512) are queued for a shared group whose two members are offline, then the
// two members come back and drain it, on our broker and on Mosquitto (repo config) in the same run.
// Each payload carries its sequence number, so every delivery is checked: nothing lost, nothing
// delivered twice. Resident memory (VmRSS) is sampled every 100 ms throughout; the size of the
// data on disk is read at the peak and again after the drain (once our broker gave the space back);
// our broker's memory map says where its resident memory is, idle and after the drain.
//
// Mosquitto's repo config writes its whole store every second (autosave_interval 1): with a
// million messages queued that is 600 MB a second, and Mosquitto spends its time writing
// snapshots; BENCH_MOSQUITTO_AUTOSAVE=<seconds> runs it with another interval (said in the output).
//
// Our broker runs as the container image runs it: compiled (`npm run build`, done here first) and
// started by plain node. BENCH_BROKER_FROM=source runs broker/main.ts through tsx instead, as
// `npm start` does in development; tsx's loader thread then adds about 45 MiB of resident memory.
//
//   npm run bench:backlog   (BENCH_BACKLOG_MESSAGES=1000000 BENCH_BACKLOG_BYTES=512 BENCH_INFLIGHT=1000 BENCH_MOSQUITTO_AUTOSAVE=1 BENCH_BROKER_FROM=dist)
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { formatPasswordFile } from '../broker/password-hash.js';
import { HANDED_BACK } from '../broker/memory.js';
import { startMosquitto } from '../broker/mosquitto/run.js';
import { findProgram } from '../lib/programs.js';
import { sleep } from '../lib/shutdown.js';
import { stockReserved } from '../lib/topics.js';
import { startBroker } from '../harness/broker.js';
import { freePort } from '../harness/process.js';
import { memoryParts, rssMiB, type MemoryParts } from './cpu.js';
import { processesFrom } from './from.js';
import { connectClient } from '../harness/mqtt.js';

const MESSAGES = Number(process.env.BENCH_BACKLOG_MESSAGES ?? 1_000_000);
const BYTES = Math.max(16, Number(process.env.BENCH_BACKLOG_BYTES ?? 512));
const INFLIGHT = Number(process.env.BENCH_INFLIGHT ?? 1000);
const AUTOSAVE = process.env.BENCH_MOSQUITTO_AUTOSAVE;
// A group and topic the ACL gives the users: stock publishes reservations, the order workers drain them.
const TOPIC = stockReserved.topic;
const SHARE = `$share/order-workers/${TOPIC}`;
const MEMBERS = ['worker-backlog-m1', 'worker-backlog-m2'];

const dir = mkdtempSync(join(tmpdir(), 'bench-backlog-'));
const passwordFile = join(dir, 'passwd');
writeFileSync(passwordFile, formatPasswordFile({ stock: 'bench', worker: 'bench' }));

const connect = (url: string, clientId: string, user: string, clean: boolean) =>
  connectClient(url, { clientId, clean, protocolVersion: 4, reconnectPeriod: 0, username: user, password: 'bench' });

/** Bytes of the files under `path` (a broker's data directory). */
function diskBytes(path: string): number {
  let total = 0;
  for (const name of readdirSync(path, { recursive: true }) as string[]) {
    const s = statSync(join(path, name), { throwIfNoEntry: false });
    if (s?.isFile()) total += s.size;
  }
  return total;
}

/** Peak resident memory of `pid` between start() and stop(), sampled every 100 ms. */
function rssSampler(pid: number | undefined) {
  let peak = 0;
  /** Where the memory was at the peak (the memory map is read only when a new peak is seen). */
  let parts: MemoryParts | undefined;
  const sample = () => {
    const rss = rssMiB(pid) ?? 0;
    if (rss > peak) [peak, parts] = [rss, memoryParts(pid)];
  };
  const timer = setInterval(sample, 100);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peak;
    },
    get parts() {
      return parts;
    },
  };
}

interface Result {
  name: string;
  publishRate: number;
  drainRate: number;
  rss: { idle: number; peakPublish: number; peakDrain: number; after: number };
  /** Where the resident memory is, idle, at the peak of the drain and after it. */
  parts: { idle?: MemoryParts | undefined; peakDrain?: MemoryParts | undefined; after?: MemoryParts | undefined };
  disk: { peak: number; after: number };
  lost: number;
  duplicates: number;
}

const progress = (line: string) => process.stderr.write(`  ${line}\n`);

/** Called as the drain starts; what it returns waits, after the drain, until the broker settled. */
type Settle = () => () => Promise<void>;

async function run(name: string, url: string, pid: number | undefined, dataDir: string, watchSettle: Settle): Promise<Result> {
  // The group exists, with both members away.
  for (const id of MEMBERS) {
    const m = await connect(url, id, 'worker', false);
    await m.subscribeAsync(SHARE, { qos: 1 });
    await m.endAsync();
  }
  const idle = rssMiB(pid) ?? 0;
  const idleParts = memoryParts(pid);
  const publisher = await connect(url, 'stock-backlog-publisher', 'stock', true);
  let sampler = rssSampler(pid);
  const payload = Buffer.alloc(BYTES, 'x');
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    let sent = 0;
    let outstanding = 0;
    const pump = () => {
      while (outstanding < INFLIGHT && sent < MESSAGES) {
        const body = Buffer.from(payload);
        body.writeUInt32BE(sent, 0);
        outstanding++;
        sent++;
        publisher.publish(TOPIC, body, { qos: 1 }, (err) => {
          if (err) return reject(err);
          outstanding--;
          if (sent === MESSAGES && outstanding === 0) resolve();
          else if (outstanding < INFLIGHT / 2) pump();
        });
      }
    };
    pump();
  });
  const publishRate = MESSAGES / ((performance.now() - started) / 1000);
  await publisher.endAsync();
  const peakPublish = sampler.stop();
  const diskPeak = diskBytes(dataDir);
  progress(`${name}: ${MESSAGES} queued at ${Math.round(publishRate)}/s, RSS peak ${peakPublish.toFixed(0)} MiB, ${(diskPeak / 1048576).toFixed(0)} MiB on disk; draining`);

  const seen = new Uint8Array(MESSAGES);
  let received = 0;
  let duplicates = 0;
  let done!: () => void;
  const drained = new Promise<void>((resolve) => (done = resolve));
  sampler = rssSampler(pid);
  const settle = watchSettle();
  const drainStart = performance.now();
  const members: MqttClient[] = await Promise.all(
    MEMBERS.map(async (id) => {
      const m = mqtt.connect(url, { clientId: id, clean: false, protocolVersion: 4, reconnectPeriod: 0, username: 'worker', password: 'bench' });
      m.handleMessage = (packet, ack) => {
        const n = (packet.payload as Buffer).readUInt32BE(0);
        if (seen[n]! > 0) duplicates++;
        else received++;
        seen[n] = Math.min(255, seen[n]! + 1);
        if (received === MESSAGES) done();
        ack();
      };
      await new Promise<void>((resolve, reject) => m.once('connect', () => resolve()).once('error', reject));
      return m;
    }),
  );
  // At most half an hour; the timer must not hold the process once the run is over.
  let limit: NodeJS.Timeout | undefined;
  await Promise.race([drained, new Promise<void>((resolve) => (limit = setTimeout(resolve, 30 * 60_000)))]);
  clearTimeout(limit);
  const drainRate = received / ((performance.now() - drainStart) / 1000);
  progress(`${name}: drained at ${Math.round(drainRate)}/s`);
  // Late duplicates would arrive now.
  await sleep(1000);
  const peakDrain = sampler.stop();
  const peakDrainParts = sampler.parts;
  await Promise.all(members.map((m) => m.endAsync()));
  await settle();
  return {
    name,
    publishRate,
    drainRate,
    rss: { idle, peakPublish, peakDrain, after: rssMiB(pid) ?? 0 },
    parts: { idle: idleParts, peakDrain: peakDrainParts, after: memoryParts(pid) },
    disk: { peak: diskPeak, after: diskBytes(dataDir) },
    lost: MESSAGES - received,
    duplicates,
  };
}

const results: Result[] = [];
/** Our broker's last log line saying it handed memory back once a burst was over. */
let handedBack: string | undefined;
const FROM = processesFrom('BENCH_BROKER_FROM', progress);
const ours = await startBroker({ env: { BROKER_ALLOW_ANONYMOUS: 'false', BROKER_PASSWORD_FILE: passwordFile }, compiled: FROM === 'dist' });
// A broker that dies mid-run would leave the benchmark waiting for messages that never come.
const died = (code: number | null, signal: NodeJS.Signals | null) => {
  process.stderr.write(`our broker exited (${signal ?? code}) during the benchmark; its last lines:\n${ours.logs.slice(-20).join('\n')}\n`);
  process.exit(1);
};
ours.process.once('exit', died);
try {
  // After the drain: wait (up to a minute) until the broker has given the freed pages back, on
  // disk and in memory (it logs each time a burst is over and it handed memory back).
  const settle: Settle = () => {
    const logged = ours.logs.length;
    return async () => {
      const deadline = Date.now() + 60_000;
      const handedBack = () => ours.logs.slice(logged).some((line) => line.includes(HANDED_BACK));
      let last = diskBytes(ours.dataDir);
      while (Date.now() < deadline) {
        await sleep(2000);
        const now = diskBytes(ours.dataDir);
        if (now >= last && now < 64 * 1024 * 1024 && handedBack()) break;
        last = now;
      }
    };
  };
  results.push(await run(FROM === 'dist' ? 'our broker (compiled)' : 'our broker (tsx)', ours.mqttUrl, ours.process.pid, ours.dataDir, settle));
  handedBack = ours.logs.findLast((line) => line.includes(HANDED_BACK));
} finally {
  ours.process.off('exit', died);
  await ours.stop();
}
if (findProgram('mosquitto')) {
  const dataDir = join(dir, 'mosquitto');
  const mosquitto = await startMosquitto({ port: await freePort(), dataDir, passwordFile, ...(AUTOSAVE ? { settings: { autosave_interval: AUTOSAVE } } : {}) });
  try {
    // Mosquitto writes its whole state every autosave_interval (1 s in the repo config).
    results.push(await run(AUTOSAVE ? `Mosquitto (autosave every ${AUTOSAVE} s)` : 'Mosquitto', mosquitto.url, mosquitto.child.pid, dataDir, () => () => sleep(3000)));
  } finally {
    await mosquitto.stop();
  }
} else {
  process.stderr.write('mosquitto not installed (apt-get install -y mosquitto): skipping it\n');
}
rmSync(dir, { recursive: true, force: true });

const mib = (b: number) => (b / 1024 / 1024).toFixed(0);
console.log(`\n${MESSAGES} messages of ${BYTES} B queued for a shared group with both members offline, then drained by the two`);
console.log(`${'broker'.padEnd(34)}${'publish/s'.padStart(10)}${'drain/s'.padStart(10)}${'lost'.padStart(6)}${'dup'.padStart(6)}   RSS MiB idle / peak publishing / peak draining / after   disk MiB peak / after`);
for (const r of results) {
  console.log(
    `${r.name.padEnd(34)}${Math.round(r.publishRate).toString().padStart(10)}${Math.round(r.drainRate).toString().padStart(10)}${String(r.lost).padStart(6)}${String(r.duplicates).padStart(6)}   ` +
      `${[r.rss.idle, r.rss.peakPublish, r.rss.peakDrain, r.rss.after].map((v) => v.toFixed(0)).join(' / ').padEnd(44)}${mib(r.disk.peak)} / ${mib(r.disk.after)}`,
  );
}
const [o, m] = results;
if (o && m) console.log(`drain rate, our broker / Mosquitto: ${(o.drainRate / m.drainRate).toFixed(2)} (goal: at least 1.00)`);
if (o) {
  const peak = Math.max(o.rss.peakPublish, o.rss.peakDrain);
  const parts = (p: MemoryParts | undefined) =>
    p ? `${p.rss.toFixed(0)} MiB = malloc's heap ${p.mallocHeap.toFixed(0)} + other anonymous (the JavaScript heap among it) ${p.otherAnonymous.toFixed(0)} + files ${p.files.toFixed(0)}` : 'unreadable';
  console.log(`our broker's resident memory, idle: ${parts(o.parts.idle)}; at the peak of the drain: ${parts(o.parts.peakDrain)}; after the drain: ${parts(o.parts.after)}`);
  const trimmed = handedBack ? (JSON.parse(handedBack) as { rssMiB: { before: number; after: number }; released: boolean }) : undefined;
  console.log(
    trimmed
      ? `our broker, once the drain was over, handed freed memory back: RSS ${trimmed.rssMiB.before} → ${trimmed.rssMiB.after} MiB (malloc_trim released some: ${trimmed.released ? 'yes' : 'no'})`
      : 'our broker did not say it handed memory back after the drain',
  );
  console.log(`our broker: RSS after the drain ${o.rss.after.toFixed(0)} MiB against ${o.rss.idle.toFixed(0)} idle: ${(o.rss.after / o.rss.idle).toFixed(2)} × (goal: back down)`);
  console.log(`our broker: peak RSS ${peak.toFixed(0)} MiB (goal: under 200), ${o.lost} lost, ${o.duplicates} delivered twice, disk ${mib(o.disk.peak)} → ${mib(o.disk.after)} MiB, RSS ${Math.max(o.rss.peakPublish, o.rss.peakDrain).toFixed(0)} → ${o.rss.after.toFixed(0)} MiB`);
}
