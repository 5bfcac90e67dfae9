// QoS 1 throughput through three brokers with the same mqtt.js clients, in one run:
//   - our broker: a shared subscription with two members, durable (SQLite, PUBACK after commit);
//   - plain Aedes, in memory, one normal subscription (what we started from);
//   - Mosquitto with the repo's config, the same shared subscription with two members.
// One publisher keeps up to BENCH_INFLIGHT publishes unacknowledged; the clock runs from the first
// publish to the last delivery, after a warm-up round. Each payload size is measured in turn, the
// rounds alternating between the brokers; prints messages per second (median of the rounds) and the
// ratios. Our broker and Mosquitto both let a member hold 32 unacknowledged messages (their configs).
//
//   npm run bench:broker   (BENCH_MESSAGES=20000 BENCH_PAYLOAD_BYTES=256,1024 BENCH_INFLIGHT=500 BENCH_WARMUP=10000 BENCH_ROUNDS=5;
//                           BROKER_INFLIGHT_WINDOW is passed on to our broker)
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import mqtt, { type MqttClient } from 'mqtt';
import { formatPasswordFile } from '../broker/password-hash.js';
import { startMosquitto } from '../broker/mosquitto/run.js';
import { freePort } from '../harness/process.js';
import { startBroker } from '../harness/broker.js';
import { findProgram } from '../lib/programs.js';
import { stockReserved } from '../lib/topics.js';

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000);
const PAYLOADS = (process.env.BENCH_PAYLOAD_BYTES ?? '256,1024').split(',').map((n) => Buffer.alloc(Number(n), 'x'));
const INFLIGHT = Number(process.env.BENCH_INFLIGHT ?? 500);
/** Messages of the unmeasured round before each measured one (JIT, caches, SQLite pages). */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 10_000);
// The real workflow the ACL allows: stock publishes reservations, the order workers' group drains them.
const TOPIC = stockReserved.topic;
const GROUP = 'order-workers';

const dir = mkdtempSync(join(tmpdir(), 'bench-broker-'));
const passwordFile = join(dir, 'passwd');
writeFileSync(passwordFile, formatPasswordFile({ stock: 'bench', worker: 'bench' }));

const connect = (url: string, clientId: string, user?: string, clean = false) =>
  // A user's client ids start with its name (broker/mosquitto/acl).
  mqtt.connectAsync(url, { clientId: user ? `${user}-${clientId}` : clientId, clean, protocolVersion: 4, reconnectPeriod: 0, ...(user ? { username: user, password: 'bench' } : {}) });

/** A warm-up round (JIT, caches), then the measured one: messages per second. */
async function measure(url: string, how: { shared: boolean; user: boolean }, payload: Buffer): Promise<number> {
  await run(url, how, WARMUP, payload);
  return run(url, how, MESSAGES, payload);
}

/** Publishes `count` messages with QoS 1 and resolves with messages per second once all were delivered. */
async function run(url: string, { shared, user }: { shared: boolean; user: boolean }, count: number, payload: Buffer): Promise<number> {
  const filter = shared ? `$share/${GROUP}/${TOPIC}` : TOPIC;
  const members: MqttClient[] = [];
  let delivered = 0;
  let done: () => void = () => {};
  const allDelivered = new Promise<void>((resolve) => (done = resolve));
  for (const name of shared ? ['m1', 'm2'] : ['m1']) {
    const m = await connect(url, `bench-${name}`, user ? 'worker' : undefined);
    m.handleMessage = (_packet, ack) => {
      if (++delivered === count) done();
      ack();
    };
    await m.subscribeAsync(filter, { qos: 1 });
    members.push(m);
  }
  const publisher = await connect(url, 'bench-pub', user ? 'stock' : undefined, true);
  const started = performance.now();
  let sent = 0;
  await new Promise<void>((resolve, reject) => {
    let outstanding = 0;
    const pump = () => {
      while (outstanding < INFLIGHT && sent < count) {
        outstanding++;
        sent++;
        publisher.publish(TOPIC, payload, { qos: 1 }, (err) => {
          if (err) return reject(err);
          outstanding--;
          if (sent === count && outstanding === 0) resolve();
          else pump();
        });
      }
    };
    pump();
  });
  await allDelivered;
  const seconds = (performance.now() - started) / 1000;
  await Promise.all([publisher, ...members].map((c) => c.endAsync(true)));
  return count / seconds;
}

/** Plain Aedes with its in-memory persistence, in its own process like the other two brokers. */
async function startPlainAedes() {
  const script = `
    import { Aedes } from 'aedes';
    import { createServer } from 'node:net';
    const broker = await Aedes.createBroker();
    const server = createServer(broker.handle).listen(0, '127.0.0.1', () => console.log(server.address().port));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve) => createInterface({ input: child.stdout }).once('line', resolve));
  return {
    url: `mqtt://127.0.0.1:${port}`,
    stop: () => new Promise<void>((resolve) => child.once('exit', () => resolve()).kill('SIGTERM')),
  };
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
interface Contender {
  name: string;
  url: string;
  how: { shared: boolean; user: boolean };
  stop(): Promise<void>;
  /** payload size → messages per second of each round */
  rates: Map<number, number[]>;
}

const ours = await startBroker({ env: { BROKER_ALLOW_ANONYMOUS: 'false', BROKER_PASSWORD_FILE: passwordFile } });
const plain = await startPlainAedes();
const contenders: Contender[] = [
  { name: `our broker (shared, 2 members, durable, window ${process.env.BROKER_INFLIGHT_WINDOW ?? 32})`, url: ours.mqttUrl, how: { shared: true, user: true }, stop: ours.stop, rates: new Map() },
  { name: 'plain Aedes (memory, normal subscription)', url: plain.url, how: { shared: false, user: false }, stop: plain.stop, rates: new Map() },
];
if (findProgram('mosquitto')) {
  const mosquitto = await startMosquitto({ port: await freePort(), dataDir: join(dir, 'mosquitto'), passwordFile });
  contenders.push({ name: 'Mosquitto 2.0 (shared, 2 members, repo config)', url: mosquitto.url, how: { shared: true, user: true }, stop: mosquitto.stop, rates: new Map() });
} else {
  process.stderr.write('mosquitto not installed (apt-get install -y mosquitto): skipping it\n');
}
// Rounds alternate between the brokers, so that a busy moment on the machine hits all of them.
for (const payload of PAYLOADS) {
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of contenders) {
      const rates = c.rates.get(payload.length) ?? [];
      rates.push(await measure(c.url, c.how, payload));
      c.rates.set(payload.length, rates);
    }
  }
}
await Promise.all(contenders.map((c) => c.stop()));
rmSync(dir, { recursive: true, force: true });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const payload of PAYLOADS) {
  const size = payload.length;
  const [oursRate, plainRate, mosquittoRate] = contenders.map((c) => median(c.rates.get(size)!));
  process.stdout.write(`\nQoS 1, ${MESSAGES} messages of ${size} bytes, publisher window ${INFLIGHT}, median of ${ROUNDS} rounds\n`);
  for (const c of contenders) {
    const rates = c.rates.get(size)!;
    process.stdout.write(`${c.name.padEnd(58)} ${Math.round(median(rates)).toString().padStart(7)} msg/s   (${rates.map((r) => Math.round(r)).join(', ')})\n`);
  }
  process.stdout.write(`our broker / plain Aedes: ${(oursRate! / plainRate!).toFixed(2)}\n`);
  if (mosquittoRate) process.stdout.write(`our broker / Mosquitto:   ${(oursRate! / mosquittoRate).toFixed(2)} (goal: at least 1.00)\n`);
}
