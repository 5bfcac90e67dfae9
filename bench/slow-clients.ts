// Slow clients against the gateway: one address holds thousands of connections whose request
// headers never finish (slowloris), for a long while, and another address sends ordinary requests
// all along; every one of those must be served. nginx runs the repository's nginx.conf in front of
// the real catalog service (and the broker it publishes to).
//
//   node --import tsx bench/slow-clients.ts            9,000 connections held for 75 s
//   SLOW_CONNECTIONS=… SLOW_DURATION_S=… SLOW_RATE=…   (requests per second from the other address)
//
// test/gateway-slow-clients.test.ts runs a shorter version. Linux only: the two client addresses
// are 127.0.9.2 and 127.0.9.1 (the whole of 127.0.0.0/8 is loopback there).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { RAISE_FILE_LIMIT, startGateway, type RunningGateway } from '../gateway/nginx.js';
import { findProgram } from '../lib/programs.js';
import { ROOT, eventually, freePort, startProcess, type Proc } from '../harness/process.js';
import { gatewayDir } from '../harness/gateway.js';
import type { AttackReport } from './slow-header-clients.js';

export interface SlowClientsOptions {
  /** Slow-header connections held from one address. */
  connections: number;
  /** How long they are held once all are open, while the other address sends its requests. */
  durationMs: number;
  /** Requests per second from the other address, each on a new connection. */
  rate: number;
  /** nginx worker processes (default: the configuration's, auto). */
  workers?: number;
  log?: (line: string) => void;
}

export interface SlowClientsReport {
  connections: number;
  durationMs: number;
  attack: { minOpen: number; meanOpen: number; maxOpen: number; opened: number; closedByServer: number; errors: Record<string, number> };
  requests: { sent: number; served: number; failures: Record<string, number>; p50Ms: number; p99Ms: number; maxMs: number };
  gateway: { workers: number; workerFileLimit: number; notEnoughConnections: number };
  machine: { cpus: number; loadBefore: number; loadAfter: number };
}

const ATTACKER = fileURLToPath(new URL('./slow-header-clients.ts', import.meta.url));
// Addresses no other test uses as a client, so that no rate-limit bucket or port range is shared.
const VICTIM = '127.0.9.2';
const ATTACKER_ADDRESS = '127.0.9.1';

/** The soft and hard limits on open files of a process (Linux /proc), or of this one. */
export function fileLimits(pid: number | 'self' = 'self'): { soft: number; hard: number } {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'))!;
  const [soft, hard] = line.replace('Max open files', '').trim().split(/\s+/).map((v) => (v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v)));
  return { soft: soft!, hard: hard! };
}

/** The nginx worker processes under a master (children of its pid). */
function nginxWorkers(master: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        // /proc/<pid>/stat: "pid (comm) state ppid …"
        return Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === master;
      } catch {
        return false;
      }
    })
    .map(Number);
}

interface Attacker {
  child: ChildProcess;
  latest: AttackReport;
  exited: Promise<void>;
}

/**
 * One attacking process for `connections` connections, run through sh so that its soft limit on
 * open files can be raised to the hard one (Node cannot call setrlimit).
 */
function startAttacker(port: number, connections: number, durationMs: number): Attacker {
  // A header line every 5 s: more often than a per-read timeout would allow, and as cheap as that
  // gets (nginx's header timeout counts from the first byte, so dripping faster buys nothing).
  const settings = { host: '127.0.0.1', port, from: ATTACKER_ADDRESS, connections, durationMs, dripMs: 5_000 };
  const child = spawn('/bin/sh', ['-c', RAISE_FILE_LIMIT, 'sh', process.execPath, '--import', 'tsx', ATTACKER], {
    cwd: ROOT,
    env: { ...process.env, SLOW_CLIENTS: JSON.stringify(settings) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const attacker: Attacker = {
    child,
    latest: { open: 0, opened: 0, closedByServer: 0, errors: {}, done: false },
    exited: new Promise((r) => child.once('exit', () => r())),
  };
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      attacker.latest = JSON.parse(line) as AttackReport;
    } catch {
      // not a report line
    }
  });
  return attacker;
}

/** One GET on a new connection from `from`: its status, or why it failed. */
function get(url: string, from: string, timeoutMs: number): Promise<{ status?: number; error?: string; ms: number }> {
  const started = performance.now();
  return new Promise((done) => {
    const req = request(url, { localAddress: from, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.once('end', () => done({ status: res.statusCode, ms: performance.now() - started }));
      res.once('error', (err: NodeJS.ErrnoException) => done({ error: err.code ?? err.message, ms: performance.now() - started }));
    });
    req.once('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.once('error', (err: NodeJS.ErrnoException) => done({ error: err.code ?? err.message, ms: performance.now() - started }));
    req.end();
  });
}

const percentile = (xs: number[], p: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]! : 0);

export async function runSlowClients({ connections, durationMs, rate, workers, log = () => undefined }: SlowClientsOptions): Promise<SlowClientsReport> {
  const loadBefore = loadavg()[0]!;
  const dir = gatewayDir('slow-clients-');
  const procs: Proc[] = [];
  const attackers: Attacker[] = [];
  let gateway: RunningGateway | undefined;
  try {
    const [mqttPort, wsPort, brokerHttp, catalogPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const common = { DATA_DIR: dir, HTTP_HOST: '127.0.0.1', MQTT_URL: `mqtt://127.0.0.1:${mqttPort}`, BROKER_ALLOW_ANONYMOUS: 'true', LOG_LEVEL: 'warn' };
    const ready = (l: Record<string, unknown>) => typeof l.msg === 'string' && l.msg.endsWith('listening');
    procs.push(await startProcess({ name: 'broker', entry: 'broker/main.ts', env: { ...common, LOG_LEVEL: 'info', MQTT_PORT: String(mqttPort), MQTT_WS_PORT: String(wsPort), HTTP_PORT: String(brokerHttp) }, ready }));
    procs.push(await startProcess({ name: 'catalog', entry: 'api/catalog/main.ts', env: { ...common, LOG_LEVEL: 'info', HTTP_PORT: String(catalogPort) }, ready }));
    gateway = await startGateway({
      GATEWAY_RUNTIME_DIR: join(dir, 'gateway'),
      GATEWAY_PORT: String(await freePort()),
      CATALOG_UPSTREAM: `127.0.0.1:${catalogPort}`,
      MQTT_WS_UPSTREAM: `127.0.0.1:${wsPort}`,
      // The ordinary client's requests must never meet a rate limit: only connections are at stake.
      GATEWAY_READ_RATE_PER_MIN: '6000000',
      GATEWAY_READ_BURST: '100000',
      ...(workers ? { GATEWAY_WORKER_PROCESSES: String(workers) } : {}),
    });
    const port = Number(new URL(gateway.url).port);

    const nginxWorkerPids = await eventually(() => {
      const pids = nginxWorkers(gateway!.child.pid!);
      return pids.length > 0 && pids;
    }, { what: 'nginx worker processes' });
    const workerFileLimit = Math.min(...nginxWorkerPids.map((pid) => fileLimits(pid).soft));
    log(`nginx: ${nginxWorkerPids.length} worker(s), each may open ${workerFileLimit} files`);
    if (workerFileLimit < connections + 1024) {
      throw new Error(`nginx's workers may open ${workerFileLimit} files, fewer than the ${connections} connections of this run: raise the hard limit (ulimit -Hn) or run as root`);
    }

    // Attacking processes, each within its own limit on open files, and several so that opening
    // connections is not held back by one busy event loop.
    const perProcess = Math.max(1, Math.min(3000, fileLimits().hard - 256));
    const processes = Math.ceil(connections / perProcess);
    const attackMs = durationMs + 120_000; // stopped sooner; this only bounds a run that goes wrong
    for (let i = 0; i < processes; i++) {
      const share = Math.floor(connections / processes) + (i < connections % processes ? 1 : 0);
      attackers.push(startAttacker(port, share, attackMs));
    }
    const open = () => attackers.reduce((n, a) => n + a.latest.open, 0);
    // A gateway short of connections, or a machine too busy to open them faster than nginx's header
    // timeout drops them, never lets them all open: the run goes on with what the attacker holds.
    await eventually(() => open() >= connections, { timeoutMs: 30_000, intervalMs: 250, what: `${connections} slow connections open` }).catch(() => {
      log(`only ${open()} of ${connections} slow connections could be opened: ${JSON.stringify(attackers.map((a) => a.latest))}`);
    });
    log(`${open()} slow-header connections open from ${ATTACKER_ADDRESS} (${processes} process(es)); ${VICTIM} starts its requests`);

    // The ordinary client: `rate` requests per second on a schedule, each on a new connection.
    const results: Promise<{ status?: number; error?: string; ms: number }>[] = [];
    let minOpen = open();
    let maxOpen = minOpen;
    let sumOpen = 0;
    const started = performance.now();
    const url = `${gateway.url}/api/catalog/products?limit=1`;
    for (let n = 0; ; n++) {
      const at = started + (n * 1000) / rate;
      if (at - started >= durationMs) break;
      const wait = at - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      results.push(get(url, VICTIM, 30_000));
      const now = open();
      sumOpen += now;
      minOpen = Math.min(minOpen, now);
      maxOpen = Math.max(maxOpen, now);
      if (n % Math.max(1, rate * 5) === 0) log(`${Math.round((performance.now() - started) / 1000)} s: ${now} slow connections open, ${n + 1} requests sent`);
    }
    const outcomes = await Promise.all(results);

    for (const a of attackers) a.child.kill('SIGTERM');
    await Promise.all(attackers.map((a) => a.exited));
    const failures: Record<string, number> = {};
    for (const o of outcomes) {
      if (o.status !== 200) failures[o.error ?? `status ${o.status}`] = (failures[o.error ?? `status ${o.status}`] ?? 0) + 1;
    }
    const errors: Record<string, number> = {};
    for (const a of attackers) for (const [code, count] of Object.entries(a.latest.errors)) errors[code] = (errors[code] ?? 0) + count;
    const times = outcomes.filter((o) => o.status === 200).map((o) => o.ms);
    return {
      connections,
      durationMs,
      attack: {
        minOpen,
        meanOpen: Math.round(sumOpen / Math.max(1, outcomes.length)),
        maxOpen,
        opened: attackers.reduce((n, a) => n + a.latest.opened, 0),
        closedByServer: attackers.reduce((n, a) => n + a.latest.closedByServer, 0),
        errors,
      },
      requests: {
        sent: outcomes.length,
        served: outcomes.filter((o) => o.status === 200).length,
        failures,
        p50Ms: Math.round(percentile(times, 50)),
        p99Ms: Math.round(percentile(times, 99)),
        maxMs: Math.round(Math.max(0, ...times)),
      },
      gateway: {
        workers: nginxWorkerPids.length,
        workerFileLimit,
        notEnoughConnections: (gateway.stderr().match(/worker_connections are not enough/g) ?? []).length,
      },
      machine: { cpus: cpus().length, loadBefore, loadAfter: loadavg()[0]! },
    };
  } finally {
    for (const a of attackers) a.child.kill('SIGKILL');
    await gateway?.stop();
    for (const p of procs.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatReport(r: SlowClientsReport): string {
  const errors = Object.entries(r.attack.errors).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  const failures = Object.entries(r.requests.failures).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  return [
    `${r.connections} slow-header connections from ${ATTACKER_ADDRESS} held for ${r.durationMs / 1000} s (open: ${r.attack.minOpen}–${r.attack.maxOpen}, ${r.attack.meanOpen} on average; ${r.attack.opened} opened in all, ${r.attack.closedByServer} closed by nginx's header timeout; attacker errors: ${errors})`,
    `${VICTIM}: ${r.requests.served} of ${r.requests.sent} requests served (200), failures: ${failures}; latency p50 ${r.requests.p50Ms} ms, p99 ${r.requests.p99Ms} ms, max ${r.requests.maxMs} ms`,
    `nginx: ${r.gateway.workers} worker(s), ${r.gateway.workerFileLimit} files each, "worker_connections are not enough" logged ${r.gateway.notEnoughConnections} times`,
    `machine: ${r.machine.cpus} CPUs, load average ${r.machine.loadBefore.toFixed(1)} before, ${r.machine.loadAfter.toFixed(1)} after`,
  ].join('\n');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (!findProgram('nginx')) {
    console.error('bench/slow-clients.ts needs nginx (apt-get install -y nginx)');
    process.exit(1);
  }
  const report = await runSlowClients({
    connections: Number(process.env.SLOW_CONNECTIONS ?? 9000),
    durationMs: Number(process.env.SLOW_DURATION_S ?? 75) * 1000,
    rate: Number(process.env.SLOW_RATE ?? 20),
    log: (line) => console.log(line),
  });
  console.log(`\n${formatReport(report)}`);
  const ok = report.requests.served === report.requests.sent;
  console.log(ok ? 'every request from the other address was served' : 'SOME REQUESTS FROM THE OTHER ADDRESS FAILED');
  process.exit(ok ? 0 : 1);
}
