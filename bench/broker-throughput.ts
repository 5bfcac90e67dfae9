// QoS 1 throughput through three brokers with the same mqtt.js clients, in one run:
//   - our broker: a shared subscription with two members, durable (SQLite, PUBACK after commit);
//   - plain Aedes, in memory, one normal subscription (what we started from);
//   - Mosquitto with the repo's config, the same shared subscription with two members;
//   - our broker on Redis (BROKER_STORE=redis, AOF with appendfsync always) with one, two and three
//     nodes: the publisher on the first node, the two members on the others when there are several
//     (two nodes: both on the second), so every message crosses nodes through Redis.
// One publisher keeps up to BENCH_INFLIGHT publishes unacknowledged; the clock runs from the first
// publish to the last delivery, after a warm-up round. Each payload size is measured in turn, the
// rounds alternating between the brokers; prints messages per second (median of the rounds) and the
// ratios, and what a message cost each broker in CPU time (its processes' user + system time from
// /proc over the measured round, so less disturbed by neighbours on a shared machine than the rates;
// on Redis, the nodes' and not Redis's own), and what it cost the clients (this process: the
// publisher and the members), which tells a broker that is slower from one that makes its clients
// work harder; and how busy the clients' event loop was (near 100 %, the clients were the limit of
// that round, not the broker). Our broker and Mosquitto both let a member hold 128 unacknowledged messages (their
// configs).
//
//   npm run bench:broker   (BENCH_MESSAGES=20000 BENCH_PAYLOAD_BYTES=256,1024 BENCH_INFLIGHT=500 BENCH_WARMUP=10000 BENCH_ROUNDS=5;
//                           BENCH_CLUSTER_NODES=1,2,3, empty for none; BROKER_INFLIGHT_WINDOW is passed on to our broker)
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { MqttClient } from 'mqtt';
import { formatPasswordFile } from '../broker/password-hash.js';
import { startMosquitto } from '../broker/mosquitto/run.js';
import { freePort } from '../harness/process.js';
import { startBroker } from '../harness/broker.js';
import { startBrokerCluster } from '../harness/cluster.js';
import { findProgram } from '../lib/programs.js';
import { shareOf, stockReserved } from '../lib/topics.js';
import { cpuSeconds } from './cpu.js';
import { connectClient } from '../harness/mqtt.js';
import { median } from './figures.js';

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 20_000);
const PAYLOADS = (process.env.BENCH_PAYLOAD_BYTES ?? '256,1024').split(',').map((n) => Buffer.alloc(Number(n), 'x'));
const INFLIGHT = Number(process.env.BENCH_INFLIGHT ?? 500);
/** Messages of the unmeasured round before each measured one (JIT, caches, SQLite pages). */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 10_000);
// The real workflow the ACL allows: stock publishes reservations, the order workers' group drains them.
const TOPIC = stockReserved.topic;
const GROUP = 'order-workers';
/** Cluster sizes measured on Redis. */
const CLUSTER_NODES = (process.env.BENCH_CLUSTER_NODES ?? '1,2,3').split(',').filter(Boolean).map(Number);

const dir = mkdtempSync(join(tmpdir(), 'bench-broker-'));
const passwordFile = join(dir, 'passwd');
writeFileSync(passwordFile, formatPasswordFile({ stock: 'bench', worker: 'bench' }));

const connect = (url: string, clientId: string, user?: string, clean = false) =>
  // A user's client ids start with its name (broker/mosquitto/acl).
  connectClient(url, { clientId: user ? `${user}-${clientId}` : clientId, clean, protocolVersion: 4, reconnectPeriod: 0, ...(user ? { username: user, password: 'bench' } : {}) });

/** Where the publisher and each member connect (the same URL on one node). */
interface Placement {
  publisher: string;
  members: string[];
}

/** CPU seconds the processes have used so far, together (NaN when one cannot be read). */
const cpuOf = (pids: Array<number | undefined>) => pids.reduce<number>((sum, pid) => sum + (cpuSeconds(pid) ?? NaN), 0);

/** A warm-up round (JIT, caches), then the measured one: messages per second, and the broker's CPU microseconds per message. */
async function measure(c: Contender, payload: Buffer): Promise<{ rate: number; cpu: number; clients: number; busy: number }> {
  await run(c.where, c.how, WARMUP, payload);
  const before = cpuOf(c.pids);
  const clientsBefore = process.cpuUsage();
  const loop = performance.eventLoopUtilization();
  const rate = await run(c.where, c.how, MESSAGES, payload);
  const busy = performance.eventLoopUtilization(loop).utilization;
  const { user, system } = process.cpuUsage(clientsBefore);
  return { rate, cpu: ((cpuOf(c.pids) - before) * 1e6) / MESSAGES, clients: (user + system) / MESSAGES, busy };
}

/** Publishes `count` messages with QoS 1 and resolves with messages per second once all were delivered. */
async function run(where: Placement, { shared, user }: { shared: boolean; user: boolean }, count: number, payload: Buffer): Promise<number> {
  const filter = shared ? shareOf(GROUP, TOPIC) : TOPIC;
  const members: MqttClient[] = [];
  let delivered = 0;
  let done: () => void = () => {};
  const allDelivered = new Promise<void>((resolve) => (done = resolve));
  for (const [i, url] of where.members.entries()) {
    const m = await connect(url, `bench-m${i + 1}`, user ? 'worker' : undefined);
    m.handleMessage = (_packet, ack) => {
      if (++delivered === count) done();
      ack();
    };
    await m.subscribeAsync(filter, { qos: 1 });
    members.push(m);
  }
  const publisher = await connect(where.publisher, 'bench-pub', user ? 'stock' : undefined, true);
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
    pid: child.pid,
    stop: () => new Promise<void>((resolve) => child.once('exit', () => resolve()).kill('SIGTERM')),
  };
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
interface Contender {
  name: string;
  where: Placement;
  how: { shared: boolean; user: boolean };
  /** The broker's processes, for their CPU time. */
  pids: Array<number | undefined>;
  stop(): Promise<void>;
  /** payload size → messages per second of each round */
  rates: Map<number, number[]>;
  /** payload size → the broker's CPU microseconds per message in each round */
  cpu: Map<number, number[]>;
  /** payload size → this process's (the clients') CPU microseconds per message in each round */
  clients?: Map<number, number[]>;
  /** payload size → the share of each round this process's event loop was busy (near 1: the clients are the limit) */
  busy?: Map<number, number[]>;
}

// Every broker and redis-server started here guards against being orphaned with an exit listener.
process.setMaxListeners(32);
const logins = { BROKER_ALLOW_ANONYMOUS: 'false', BROKER_PASSWORD_FILE: passwordFile };
const ours = await startBroker({ env: logins });
const plain = await startPlainAedes();
const shared2 = (url: string): Placement => ({ publisher: url, members: [url, url] });
const contenders: Contender[] = [
  { name: `our broker (shared, 2 members, durable, window ${process.env.BROKER_INFLIGHT_WINDOW ?? 128})`, where: shared2(ours.mqttUrl), how: { shared: true, user: true }, pids: [ours.process.pid], stop: ours.stop, rates: new Map(), cpu: new Map() },
  { name: 'plain Aedes (memory, normal subscription)', where: { publisher: plain.url, members: [plain.url] }, how: { shared: false, user: false }, pids: [plain.pid], stop: plain.stop, rates: new Map(), cpu: new Map() },
];
let mosquittoName: string | undefined;
if (findProgram('mosquitto')) {
  const mosquitto = await startMosquitto({ port: await freePort(), dataDir: join(dir, 'mosquitto'), passwordFile });
  mosquittoName = 'Mosquitto 2.0 (shared, 2 members, repo config)';
  contenders.push({ name: mosquittoName, where: shared2(mosquitto.url), how: { shared: true, user: true }, pids: [mosquitto.child.pid], stop: mosquitto.stop, rates: new Map(), cpu: new Map() });
} else {
  process.stderr.write('mosquitto not installed (apt-get install -y mosquitto): skipping it\n');
}
const clusterNames: string[] = [];
if (CLUSTER_NODES.length > 0 && !findProgram('redis-server')) {
  process.stderr.write('redis-server not installed (apt-get install -y redis-server): skipping the cluster rows\n');
} else {
  for (const nodes of CLUSTER_NODES) {
    const cluster = await startBrokerCluster({ nodes, env: logins });
    const url = (i: number) => cluster.nodes[i % nodes]!.mqttUrl;
    // Publisher on the first node; members on the others (two nodes: both on the second).
    const where = nodes === 1 ? shared2(url(0)) : { publisher: url(0), members: [url(1), url(nodes === 2 ? 1 : 2)] };
    const name = `our broker on Redis, ${nodes} node${nodes > 1 ? 's' : ''} (AOF always)`;
    clusterNames.push(name);
    contenders.push({ name, where, how: { shared: true, user: true }, pids: cluster.nodes.map((n) => n.process.pid), stop: cluster.stop, rates: new Map(), cpu: new Map() });
  }
}
// Rounds alternate between the brokers, so that a busy moment on the machine hits all of them.
for (const payload of PAYLOADS) {
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of contenders) {
      const { rate, cpu, clients, busy } = await measure(c, payload);
      c.clients ??= new Map();
      c.clients.set(payload.length, [...(c.clients.get(payload.length) ?? []), clients]);
      c.busy ??= new Map();
      c.busy.set(payload.length, [...(c.busy.get(payload.length) ?? []), busy]);
      c.rates.set(payload.length, [...(c.rates.get(payload.length) ?? []), rate]);
      c.cpu.set(payload.length, [...(c.cpu.get(payload.length) ?? []), cpu]);
    }
  }
}
await Promise.all(contenders.map((c) => c.stop()));
rmSync(dir, { recursive: true, force: true });

for (const payload of PAYLOADS) {
  const size = payload.length;
  /** A contender's median at this size, of its rates or of its CPU per message. */
  const medianOf = (name: string | undefined, what: 'rates' | 'cpu') => {
    const c = contenders.find((x) => x.name === name);
    return c && median(c[what].get(size)!);
  };
  const rate = (name: string | undefined) => medianOf(name, 'rates');
  const [oursRate, plainRate] = contenders.map((c) => median(c.rates.get(size)!));
  const mosquittoRate = rate(mosquittoName);
  process.stdout.write(`\nQoS 1, ${MESSAGES} messages of ${size} bytes, publisher window ${INFLIGHT}, median of ${ROUNDS} rounds\n`);
  for (const c of contenders) {
    const rates = c.rates.get(size)!;
    const cpu = median(c.cpu.get(size)!);
    process.stdout.write(`${c.name.padEnd(58)} ${Math.round(median(rates)).toString().padStart(7)} msg/s   (${rates.map((r) => Math.round(r)).join(', ')})${Number.isNaN(cpu) ? '' : `   CPU ${cpu.toFixed(1)} µs/msg`}; clients ${median(c.clients!.get(size)!).toFixed(1)} µs/msg, their event loop ${Math.round(median(c.busy!.get(size)!) * 100)} % busy\n`);
  }
  process.stdout.write(`our broker / plain Aedes: ${(oursRate! / plainRate!).toFixed(2)}\n`);
  if (mosquittoRate) process.stdout.write(`our broker / Mosquitto:   ${(oursRate! / mosquittoRate).toFixed(2)} (goal: at least 1.00)\n`);
  const oursCpu = median(contenders[0]!.cpu.get(size)!);
  const mosquittoCpu = medianOf(mosquittoName, 'cpu');
  if (mosquittoCpu) process.stdout.write(`CPU per message, our broker / Mosquitto: ${(oursCpu / mosquittoCpu).toFixed(1)}\n`);
  const oneNode = rate(clusterNames[0]);
  for (const [i, name] of clusterNames.entries()) {
    const r = rate(name)!;
    const parts = [`/ our broker on SQLite ${(r / oursRate!).toFixed(2)}`, ...(mosquittoRate ? [`/ Mosquitto ${(r / mosquittoRate).toFixed(2)}`] : []), ...(i > 0 && oneNode ? [`/ ${CLUSTER_NODES[0]} node ${(r / oneNode).toFixed(2)}`] : [])];
    process.stdout.write(`Redis, ${CLUSTER_NODES[i]} node${CLUSTER_NODES[i]! > 1 ? 's' : ''}: ${parts.join(', ')}\n`);
  }
}
