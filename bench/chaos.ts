// The chaos harness: the real processes (harness/stack.ts) behind real nginx, a steady load of
// orders and stock imports through the gateway, and while it runs, faults: kill -9 of each kind of
// process then a restart on the same ports and data, a broker outage, an ERP that is slow and
// answers 429 and 500 at random, and SIGTERM to every process; the broker is one node on SQLite, or
// with `brokerNodes` (CHAOS_BROKER_NODES) several on one Redis. At the end it counts: every accepted
// order reached a final status, the ERP holds each order and movement exactly once, the stock
// levels follow from them, the outboxes and group queues are empty, failures are dead letters.
//
//   npm run chaos                          the long run (minutes), then the fuzz run; prints the table
//   runChaos({...})                        the engine, used by test/chaos.test.ts for a short run
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import type { RunningGateway } from '../gateway/nginx.js';
import { findProgram } from '../lib/programs.js';
import { sleep } from '../lib/shutdown.js';
import { ROOT, eventually } from '../harness/process.js';
import { ADMIN_KEY, startGatewayFor, startStack, type ProcessName, type Stack } from '../harness/stack.js';

export interface ChaosOptions {
  /** Orders posted per second, and stock movements imported per second (in imports of `importSize`). */
  ordersPerSecond?: number;
  movementsPerSecond?: number;
  importSize?: number;
  workers?: number;
  /** Broker nodes on one Redis (harness/stack.ts); unset: one node on SQLite. Kill and stop them as `broker-<n>`. */
  brokerNodes?: number;
  /** The ERP's capacity; the workers lease all of it. */
  erpCapacityRu?: number;
  /** Processes killed with SIGKILL, one after the other, each restarted after `downMs`. */
  kills?: ProcessName[];
  /** Load between two faults, and how long a killed process stays dead. */
  gapMs?: number;
  downMs?: number;
  /** Broker outage under load, every node down (0: none). */
  outageMs?: number;
  /** ERP faults: how long, and how bad. The workers run with `faultMaxAttempts` meanwhile. */
  erpFaultMs?: number;
  erpFaults?: { latencyMs: number; errorRate: number; throttleRate: number };
  faultMaxAttempts?: number;
  /** Processes sent SIGTERM under load (each must exit 0), then restarted. */
  terms?: ProcessName[];
  /** Bound on the wait for everything to settle once the load stops. */
  settleTimeoutMs?: number;
  /** Send the load straight to the services even when nginx is installed. */
  direct?: boolean;
  log?: (line: string) => void;
}

export interface Fault {
  kind: 'kill -9' | 'SIGTERM' | 'broker outage' | 'ERP faults';
  target: string;
  /** From the fault to the process being ready again (or the phase's length). */
  ms: number;
  exitCode?: number | null;
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface ChaosReport {
  viaGateway: boolean;
  loadMs: number;
  orders: { sent: number; accepted: number; acceptedUnacknowledged: number; gaveUp: number; inDb: number; confirmed: number; rejected: number; pending: number; duplicated: number; retries: number };
  movements: { sent: number; accepted: number; imports: number; recorded: number; failed: number; unprocessed: number };
  erp: { orderRecords: number; movementRecords: number; duplicateAttempts: number; lostEffects: number; extraEffects: number };
  outage: { ms: number; acceptedDuring: number; maxOutboxPending: number; drained: boolean } | undefined;
  erpFaults: { ms: number; deadLetters: number; gaveUpOrders: number; failedMovements: number } | undefined;
  deadLetters: Record<string, number>;
  faults: Fault[];
  checks: Check[];
  ok: boolean;
}

const PRODUCTS = ['wooden-train', 'wooden-car', 'fire-truck', 'biplane', 'marble-run', 'building-blocks-50'];
const START_LEVEL = 1_000_000;
const BLOCKED_EVERY = 20; // one order in 20 comes from a customer the ERP refuses (compensation path)

interface SentOrder {
  key: string;
  id?: string;
  items: { productId: string; quantity: number }[];
}

/** The steady load: orders and imports at fixed rates through `base`, retried like a careful client. */
class Load {
  readonly orders: SentOrder[] = [];
  readonly imports: { movementIds: string[]; id?: string; lost?: boolean }[] = [];
  readonly status = new Map<string, number>();
  retries = 0;
  gaveUp = 0;
  /** Answers a client would not retry (4xx): none expected, the load is valid. */
  refused = 0;
  acceptedAt: number[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private readonly run = randomUUID().slice(0, 8);
  startedAt = 0;
  stoppedAt = 0;

  constructor(
    private readonly urls: { orders: string; stock: string; catalog: string },
    private readonly ordersPerSecond: number,
    private readonly movementsPerSecond: number,
    private readonly importSize: number,
  ) {}

  start(): void {
    this.running = true;
    this.startedAt = Date.now();
    this.loops = [
      this.paced(this.ordersPerSecond, (n) => this.order(n)),
      this.paced(this.movementsPerSecond / this.importSize, (n) => this.import(n)),
      this.paced(5, () => this.read()),
    ];
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all([...this.inFlight]);
    this.stoppedAt = Date.now();
  }

  /** Fires `fire(n)` at `perSecond` on average, without waiting for the answers. */
  private async paced(perSecond: number, fire: (n: number) => Promise<void>): Promise<void> {
    if (perSecond <= 0) return;
    const t0 = Date.now();
    let n = 0;
    while (this.running) {
      const due = Math.floor(((Date.now() - t0) / 1000) * perSecond);
      while (n < due && this.inFlight.size < 1000) {
        const p = fire(n++).finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
      }
      await sleep(20);
    }
  }

  private count(status: number): void {
    this.status.set(String(status), (this.status.get(String(status)) ?? 0) + 1);
  }

  /** POST with retries on what a client should retry: no answer, 429, 502-504. */
  private async post(url: string, init: RequestInit): Promise<{ res: Response; attempts: number } | undefined> {
    for (let attempt = 1; attempt <= 120; attempt++) {
      if (attempt > 1) this.retries++;
      try {
        const res = await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) });
        this.count(res.status);
        if (![429, 502, 503, 504].includes(res.status)) return { res, attempts: attempt };
        await res.body?.cancel();
      } catch {
        this.count(0);
      }
      await sleep(250);
    }
    this.gaveUp++;
    return undefined;
  }

  private async order(n: number): Promise<void> {
    const items = [{ productId: PRODUCTS[n % PRODUCTS.length]!, quantity: 1 + (n % 3) }];
    if (n % 4 === 1) items.push({ productId: PRODUCTS[(n + 3) % PRODUCTS.length]!, quantity: 1 });
    const email = n % BLOCKED_EVERY === 7 ? `chaos${n}@blocked.example` : `chaos${n}@example.com`;
    const order: SentOrder = { key: `chaos-${this.run}-${n}`, items };
    this.orders.push(order);
    const answer = await this.post(`${this.urls.orders}/api/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': order.key },
      body: JSON.stringify({ customer: { name: `Chaos ${n}`, email }, items }),
    });
    const res = answer?.res;
    if (res?.status === 202) {
      order.id = ((await res.json()) as { id: string }).id;
      this.acceptedAt.push(Date.now());
    } else {
      if (res) this.refused++;
      await res?.body?.cancel();
    }
  }

  private async import(n: number): Promise<void> {
    const movementIds = Array.from({ length: this.importSize }, (_, i) => `chaos-${this.run}-${n}-${i + 1}`);
    const entry: (typeof this.imports)[number] = { movementIds };
    this.imports.push(entry);
    const body = movementIds.map((movementId, i) => JSON.stringify({ productId: PRODUCTS[(n + i) % PRODUCTS.length], delta: ((n * 7 + i) % 12) - 3 || 5, movementId })).join('\n');
    const answer = await this.post(`${this.urls.stock}/api/stock/imports`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', 'x-api-key': ADMIN_KEY },
      body,
    });
    if (!answer) return;
    if (answer.res.status === 202) {
      entry.id = ((await answer.res.json()) as { id: string }).id;
      return;
    }
    // The movement ids are ours and unique: refused as already used (422) after a retry means an
    // earlier attempt got in and only its answer was lost (the service died after the commit).
    if (answer.res.status === 422 && answer.attempts > 1) entry.lost = true;
    else this.refused++;
    await answer.res.body?.cancel();
  }

  private async read(): Promise<void> {
    for (const url of [`${this.urls.catalog}/api/catalog/products?limit=5`, `${this.urls.stock}/api/stock/levels/wooden-train`]) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
        await res.body?.cancel();
      } catch {
        // a read during a restart: nothing to count
      }
    }
  }

  acceptedIn(from: number, to: number): number {
    return this.acceptedAt.filter((t) => t >= from && t < to).length;
  }
}

/** Sums a Prometheus metric's samples (optionally only those whose line includes `filter`). */
async function metric(url: string, name: string, filter = ''): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if ((line.startsWith(`${name} `) || line.startsWith(`${name}{`)) && line.includes(filter)) sum += Number(line.split(' ').at(-1));
  }
  return sum;
}

/** Duplicate attempts the ERP counted, summed over its restarts (each one starts from zero). */
class ErpWatch {
  private base = 0;
  private last = { calls: 0, duplicates: 0 };
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly url: string) {}
  start(): void {
    this.timer = setInterval(() => void this.sample(), 500);
  }
  async sample(): Promise<void> {
    try {
      const s = (await (await fetch(`${this.url}/erp/stats`, { signal: AbortSignal.timeout(2000) })).json()) as { calls: number; duplicates: number };
      if (s.calls < this.last.calls) this.base += this.last.duplicates;
      this.last = s;
    } catch {
      // down for a moment
    }
  }
  async stop(): Promise<number> {
    clearInterval(this.timer);
    await this.sample();
    return this.base + this.last.duplicates;
  }
}

interface DeadLetter {
  consumer: string;
  reason: string;
  data: Record<string, unknown> | undefined;
}

export async function runChaos(options: ChaosOptions = {}): Promise<ChaosReport> {
  const o = {
    ordersPerSecond: 20,
    movementsPerSecond: 40,
    importSize: 20,
    workers: 2,
    erpCapacityRu: 2000,
    kills: ['worker-1', 'orders', 'stock', 'broker', 'erp'] as ProcessName[],
    gapMs: 3000,
    downMs: 1000,
    outageMs: 20_000,
    erpFaultMs: 10_000,
    erpFaults: { latencyMs: 30, errorRate: 0.3, throttleRate: 0.2 },
    faultMaxAttempts: 3,
    terms: ['orders', 'stock', 'catalog', 'worker-1', 'broker', 'erp'] as ProcessName[],
    settleTimeoutMs: 120_000,
    direct: false,
    log: (line: string) => console.log(line),
    ...options,
  };
  const log = o.log;
  const faults: Fault[] = [];
  let stack: Stack | undefined;
  let gateway: RunningGateway | undefined;
  let probe: mqtt.MqttClient | undefined;
  let load: Load | undefined;
  let erpWatch: ErpWatch | undefined;
  try {
    stack = await startStack({
      workers: o.workers,
      erpCapacityRu: o.erpCapacityRu,
      stock: Object.fromEntries(PRODUCTS.map((p) => [p, START_LEVEL])),
      ...(o.brokerNodes === undefined ? {} : { brokerNodes: o.brokerNodes }),
    });
    const s = stack;
    const brokerNames: ProcessName[] = o.brokerNodes === undefined ? ['broker'] : Array.from({ length: o.brokerNodes }, (_, i) => `broker-${i + 1}` as const);
    let urls = { orders: s.urls.orders, stock: s.urls.stock, catalog: s.urls.catalog };
    const viaGateway = !o.direct && findProgram('nginx') !== undefined;
    if (viaGateway) {
      // The edge limits are not under test here (test/gateway.test.ts): raised far above the load.
      gateway = await startGatewayFor(s, {
        GATEWAY_READ_RATE_PER_MIN: '6000000',
        GATEWAY_READ_BURST: '100000',
        GATEWAY_WRITE_RATE_PER_MIN: '6000000',
        GATEWAY_WRITE_BURST: '100000',
        GATEWAY_CONN_PER_IP: '10000',
        GATEWAY_WORKER_PROCESSES: '1',
      });
      urls = { orders: gateway.url, stock: gateway.url, catalog: gateway.url };
    } else log('chaos: nginx is not installed (or direct): the load goes straight to the services');

    // Dead letters, in a persistent session so that none is missed while the broker restarts.
    const deadLetters: DeadLetter[] = [];
    probe = mqtt.connect(s.urls.mqtt, { clientId: `chaos-probe-${randomUUID().slice(0, 8)}`, clean: false, reconnectPeriod: 250 });
    probe.on('error', () => {});
    probe.on('message', (topic, payload) => {
      try {
        const event = JSON.parse(payload.toString()) as { data: { consumer: string; reason: string; payload: string } };
        let data: Record<string, unknown> | undefined;
        try {
          data = (JSON.parse(event.data.payload) as { data?: Record<string, unknown> }).data;
        } catch {
          data = undefined;
        }
        deadLetters.push({ consumer: event.data.consumer, reason: event.data.reason, data });
      } catch {
        deadLetters.push({ consumer: topic, reason: 'unreadable dead letter', data: undefined });
      }
    });
    await new Promise<void>((res, rej) => probe!.once('connect', () => probe!.subscribe('woodytoys/deadletter/#', { qos: 1 }, (err) => (err ? rej(err) : res()))));

    erpWatch = new ErpWatch(s.urls.erp);
    erpWatch.start();
    load = new Load(urls, o.ordersPerSecond, o.movementsPerSecond, o.importSize);
    load.start();
    log(`chaos: load started (${o.ordersPerSecond} orders/s, ${o.movementsPerSecond} movements/s, ${viaGateway ? `through nginx at ${gateway!.url}` : 'direct'})`);
    await sleep(o.gapMs);

    // 1. kill -9 each kind of process, restart it on the same ports with the same data.
    for (const name of o.kills) {
      const t0 = Date.now();
      await s.proc(name).kill();
      await sleep(o.downMs);
      await s.restart(name);
      faults.push({ kind: 'kill -9', target: name, ms: Date.now() - t0 });
      log(`chaos: kill -9 ${name}, back after ${Date.now() - t0} ms`);
      await sleep(o.gapMs);
    }

    // 2. Broker outage: the API keeps accepting, the outboxes grow, then drain.
    let outage: ChaosReport['outage'];
    if (o.outageMs > 0) {
      const t0 = Date.now();
      await Promise.all(brokerNames.map((name) => s.proc(name).kill()));
      let maxPending = 0;
      while (Date.now() - t0 < o.outageMs) {
        try {
          maxPending = Math.max(maxPending, (await metric(s.urls.orders, 'outbox_pending')) + (await metric(s.urls.stock, 'outbox_pending')));
        } catch {
          // a service mid-restart: sample again
        }
        await sleep(250);
      }
      const acceptedDuring = load.acceptedIn(t0, Date.now());
      await Promise.all(brokerNames.map((name) => s.restart(name)));
      faults.push({ kind: 'broker outage', target: 'broker', ms: Date.now() - t0 });
      const drained = await eventually(async () => (await metric(s.urls.orders, 'outbox_pending')) + (await metric(s.urls.stock, 'outbox_pending')) < o.ordersPerSecond + o.movementsPerSecond, {
        timeoutMs: 60_000,
        intervalMs: 250,
        what: 'the outboxes to drain after the outage',
      }).then(
        () => true,
        () => false,
      );
      outage = { ms: o.outageMs, acceptedDuring, maxOutboxPending: maxPending, drained };
      log(`chaos: broker outage of ${o.outageMs} ms: ${acceptedDuring} orders accepted meanwhile, outboxes peaked at ${maxPending}, drained: ${drained}`);
      await sleep(o.gapMs);
    }

    // 3. ERP faults: slow, random 429 and 500. The workers give up sooner, so that some do.
    let faultWindow: [number, number] | undefined;
    if (o.erpFaultMs > 0) {
      const t0 = Date.now();
      const attempts = { WORKER_MAX_ATTEMPTS: String(o.faultMaxAttempts) };
      await s.restart('erp', { ERP_LATENCY_MS: String(o.erpFaults.latencyMs), ERP_ERROR_RATE: String(o.erpFaults.errorRate), ERP_THROTTLE_RATE: String(o.erpFaults.throttleRate) });
      // The workers restart side by side (each start takes seconds on a loaded machine).
      const workerNames = Array.from({ length: o.workers }, (_, i) => `worker-${i + 1}` as const);
      await Promise.all(workerNames.map((name) => s.restart(name, attempts)));
      await sleep(o.erpFaultMs);
      await s.restart('erp');
      await Promise.all(workerNames.map((name) => s.restart(name)));
      faultWindow = [t0, Date.now()];
      faults.push({ kind: 'ERP faults', target: `erp (${o.erpFaults.latencyMs} ms, ${o.erpFaults.errorRate * 100}% 500, ${o.erpFaults.throttleRate * 100}% 429)`, ms: Date.now() - t0 });
      log(`chaos: ERP faults for ${Date.now() - t0} ms`);
      await sleep(o.gapMs);
    }

    // 4. SIGTERM under load: each process must exit 0 by itself, losing nothing.
    for (const name of o.terms) {
      const t0 = Date.now();
      const proc = s.proc(name);
      const exitCode = await proc.stop(20_000);
      // Why it did not stop cleanly is in its last lines (the restart replaces the process).
      if (exitCode !== 0) log(`chaos: SIGTERM ${name} exited ${exitCode}; its last log lines:\n${proc.logs.slice(-20).map((l) => JSON.stringify(l)).join('\n')}`);
      await s.restart(name);
      faults.push({ kind: 'SIGTERM', target: name, ms: Date.now() - t0, exitCode });
      log(`chaos: SIGTERM ${name}: exit ${exitCode}, back after ${Date.now() - t0} ms`);
      await sleep(Math.min(o.gapMs, 1500));
    }

    await load.stop();
    const loadMs = load.stoppedAt - load.startedAt;
    log(`chaos: load stopped after ${loadMs} ms; waiting for everything to settle`);

    // Settle: every order final, every movement processed, outboxes and group queues empty.
    const ordersDb = new Database(join(s.dataDir, 'orders.db'), { readonly: true, fileMustExist: true });
    const stockDb = new Database(join(s.dataDir, 'stock.db'), { readonly: true, fileMustExist: true });
    const erpDb = new Database(join(s.dataDir, 'erp.db'), { readonly: true, fileMustExist: true });
    // Settled: nothing pending but what is parked (with `parked`), every outbox and group queue empty.
    const settle = (parkedToo: boolean) =>
      eventually(
        async () => {
          const parkedOnly = parkedToo ? '' : ' AND parked_at IS NULL';
          const pending = (ordersDb.prepare(`SELECT count(*) AS n FROM orders WHERE status = 'pending'${parkedOnly}`).get() as { n: number }).n;
          const unprocessed = (stockDb.prepare(`SELECT count(*) AS n FROM movements WHERE outcome IS NULL${parkedToo ? '' : ' AND parked_reason IS NULL'}`).get() as { n: number }).n;
          const outbox = (await metric(s.urls.orders, 'outbox_pending')) + (await metric(s.urls.stock, 'outbox_pending')) + (await metric(s.urls.deadletters, 'outbox_pending'));
          let queued = 0;
          for (const { http } of s.brokerUrls) queued += (await metric(http, 'mqtt_shared_queue_depth')) + (await metric(http, 'mqtt_shared_inflight'));
          return pending + unprocessed + outbox + queued === 0;
        },
        { timeoutMs: o.settleTimeoutMs, intervalMs: 500, what: 'orders, movements, outboxes and queues to settle' },
      ).then(
        () => true,
        () => false,
      );
    // The faults are over: what was parked is sent again from the dead letters, as an operator would.
    const parkedSettled = await settle(false);
    let replayed = 0;
    for (let more = true; more; ) {
      const res = await fetch(`${s.urls.deadletters}/api/deadletters`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': ADMIN_KEY }, body: JSON.stringify({ reason: 'gave up' }) });
      const body = (await res.json()) as { replayed: number; more: boolean };
      replayed += body.replayed;
      more = body.more;
    }
    log(`chaos: replayed ${replayed} dead letters`);
    const settled = parkedSettled && (await settle(true));
    await sleep(500); // dead letters published just before the last acknowledgement
    const duplicateAttempts = await erpWatch.stop();

    // --- Counting ---------------------------------------------------------------------------------
    const orderRows = ordersDb.prepare('SELECT id, status, items, reason FROM orders').all() as { id: string; status: string; items: string; reason: string | null }[];
    const parkedOrders = (ordersDb.prepare("SELECT DISTINCT order_id AS id FROM order_history WHERE status = 'parked'").all() as { id: string }[]).map((r) => r.id);
    const keys = ordersDb.prepare('SELECT key, order_id FROM idempotency_keys').all() as { key: string; order_id: string }[];
    const byKey = new Map(keys.map((k) => [k.key, k.order_id]));
    const byId = new Map(orderRows.map((r) => [r.id, r]));
    const acknowledged = load.orders.filter((x) => x.id);
    const unacknowledgedInDb = load.orders.filter((x) => !x.id && byKey.has(x.key)).length;
    const lostOrders = acknowledged.filter((x) => !byId.has(x.id!) || byId.get(x.id!)!.status === 'pending');
    const confirmed = orderRows.filter((r) => r.status === 'confirmed');
    const rejected = orderRows.filter((r) => r.status === 'rejected');
    const rejectedWithoutReason = rejected.filter((r) => !r.reason);

    const parkedMovements = (stockDb.prepare('SELECT count(*) AS n FROM movements WHERE parked_reason IS NOT NULL').get() as { n: number }).n;
    const movementRows = stockDb.prepare('SELECT movement_id, product_id, delta, outcome, reason FROM movements').all() as {
      movement_id: string;
      product_id: string;
      delta: number;
      outcome: string | null;
      reason: string | null;
    }[];
    const ourMovements = new Set(load.imports.flatMap((i) => (i.id || i.lost ? i.movementIds : [])));
    const acceptedMovementIds = load.imports.filter((i) => i.id).flatMap((i) => i.movementIds);
    const movementById = new Map(movementRows.map((m) => [m.movement_id, m]));
    const lostMovements = acceptedMovementIds.filter((id) => !movementById.get(id)?.outcome);
    const recorded = movementRows.filter((m) => m.outcome === 'recorded');
    const failedMovements = movementRows.filter((m) => m.outcome === 'failed');

    const erpRecords = erpDb.prepare('SELECT operation_id FROM records').all() as { operation_id: string }[];
    const erpOps = new Set(erpRecords.map((r) => r.operation_id));
    const expectedOps = new Set([...confirmed.map((r) => `order:${r.id}`), ...recorded.map((m) => `movement:${m.movement_id}`)]);
    const lostEffects = [...expectedOps].filter((op) => !erpOps.has(op));
    const extraEffects = [...erpOps].filter((op) => !expectedOps.has(op));

    // Levels: the starting level, minus confirmed orders, plus recorded movements; nothing reserved.
    const expectedLevels = new Map(PRODUCTS.map((p) => [p, START_LEVEL]));
    for (const r of confirmed) for (const it of JSON.parse(r.items) as { productId: string; quantity: number }[]) expectedLevels.set(it.productId, expectedLevels.get(it.productId)! - it.quantity);
    for (const m of recorded) expectedLevels.set(m.product_id, expectedLevels.get(m.product_id)! + m.delta);
    const levels = stockDb.prepare('SELECT product_id, available, reserved FROM levels').all() as { product_id: string; available: number; reserved: number }[];
    const levelMismatches = PRODUCTS.flatMap((p) => {
      const l = levels.find((x) => x.product_id === p);
      return l && l.available === expectedLevels.get(p) && l.reserved === 0 ? [] : [`${p}: ${l?.available}/${l?.reserved} reserved, expected ${expectedLevels.get(p)}/0`];
    });

    // Dead letters: each order the workers parked has one, with the reason; a parked order is never
    // rejected for it (transient is not final) and ends final once replayed.
    const dlCount: Record<string, number> = {};
    for (const d of deadLetters) dlCount[d.consumer] = (dlCount[d.consumer] ?? 0) + 1;
    const gaveUpOrders = parkedOrders.map((id) => byId.get(id)!).filter(Boolean);
    const dlOrders = new Set(deadLetters.filter((d) => d.consumer === 'order-workers' && d.reason).map((d) => String(d.data?.orderId)));
    const missingDl = gaveUpOrders.filter((r) => !dlOrders.has(r.id)).map((r) => r.id);
    const unexpectedDl = deadLetters.filter((d) => !(d.consumer === 'order-workers' || d.consumer === 'stock-workers') || !d.reason.startsWith('gave up'));
    const blockedRejected = rejected.filter((r) => r.reason?.includes('credit check')).length;
    const otherRejected = rejected.filter((r) => !r.reason?.startsWith('gave up') && !r.reason?.includes('credit check'));

    ordersDb.close();
    stockDb.close();
    erpDb.close();

    const checks: Check[] = [
      { name: 'load: no valid request refused or abandoned', ok: load.refused === 0 && load.gaveUp === 0, detail: `${load.refused} refused (4xx), ${load.gaveUp} abandoned after retries; statuses ${JSON.stringify(Object.fromEntries(load.status))}` },
      { name: 'settled', ok: settled, detail: settled ? 'no order pending, no movement unprocessed, outboxes and group queues empty' : 'still work left after the settle timeout' },
      { name: 'orders: every 202 reached a final status', ok: lostOrders.length === 0, detail: `${acknowledged.length} accepted, ${lostOrders.length} lost` },
      { name: 'orders: one per Idempotency-Key', ok: orderRows.length === byKey.size && new Set(byKey.values()).size === byKey.size, detail: `${orderRows.length} orders for ${byKey.size} keys` },
      { name: 'orders: rejections have a reason', ok: rejectedWithoutReason.length === 0 && otherRejected.length === 0, detail: `${blockedRejected} refused by the ERP's credit check, ${gaveUpOrders.length} given up, ${otherRejected.length} other${otherRejected[0] ? ` (${otherRejected[0].reason})` : ''}` },
      { name: 'parked work: replayed from the dead letters to a final status', ok: gaveUpOrders.every((r) => r.status !== 'pending') && replayed >= gaveUpOrders.length, detail: `${gaveUpOrders.length} orders and ${parkedMovements} movements parked, ${replayed} dead letters replayed` },
      { name: 'movements: every accepted one recorded or failed', ok: lostMovements.length === 0 && [...ourMovements].every((id) => movementById.get(id)?.outcome), detail: `${acceptedMovementIds.length} accepted, ${lostMovements.length} lost` },
      { name: 'ERP: each order and movement exactly once', ok: lostEffects.length === 0 && extraEffects.length === 0, detail: `${erpOps.size} records, ${lostEffects.length} missing${lostEffects[0] ? ` (${lostEffects[0]})` : ''}, ${extraEffects.length} unexpected${extraEffects[0] ? ` (${extraEffects[0]})` : ''}; ${duplicateAttempts} duplicate attempts absorbed` },
      { name: 'stock levels follow the orders and movements', ok: levelMismatches.length === 0, detail: levelMismatches.join('; ') || `${PRODUCTS.length} products match, nothing left reserved` },
      { name: 'dead letters: each failure past the attempt limit, with its reason', ok: missingDl.length === 0 && unexpectedDl.length === 0, detail: `${deadLetters.length} dead letters; ${missingDl.length} failures without one; ${unexpectedDl.length} unexpected${unexpectedDl[0] ? ` (${unexpectedDl[0].consumer}: ${unexpectedDl[0].reason})` : ''}` },
      { name: 'SIGTERM: every process exited 0', ok: faults.filter((f) => f.kind === 'SIGTERM').every((f) => f.exitCode === 0), detail: faults.filter((f) => f.kind === 'SIGTERM').map((f) => `${f.target} ${f.exitCode}`).join(', ') || 'none sent' },
    ];
    if (outage) {
      checks.push({ name: 'broker outage: API kept accepting, outboxes grew and drained', ok: outage.acceptedDuring > 0 && outage.maxOutboxPending > 0 && outage.drained, detail: `${outage.acceptedDuring} orders accepted during ${outage.ms} ms, outboxes peaked at ${outage.maxOutboxPending}` });
    }
    const report: ChaosReport = {
      viaGateway,
      loadMs,
      orders: {
        sent: load.orders.length,
        accepted: acknowledged.length,
        acceptedUnacknowledged: unacknowledgedInDb,
        gaveUp: load.gaveUp,
        inDb: orderRows.length,
        confirmed: confirmed.length,
        rejected: rejected.length,
        pending: orderRows.length - confirmed.length - rejected.length,
        duplicated: orderRows.length - byKey.size,
        retries: load.retries,
      },
      movements: {
        sent: load.imports.length * o.importSize,
        accepted: acceptedMovementIds.length,
        imports: load.imports.filter((i) => i.id).length,
        recorded: recorded.length,
        failed: failedMovements.length,
        unprocessed: movementRows.length - recorded.length - failedMovements.length,
      },
      erp: {
        orderRecords: [...erpOps].filter((op) => op.startsWith('order:')).length,
        movementRecords: [...erpOps].filter((op) => op.startsWith('movement:')).length,
        duplicateAttempts,
        lostEffects: lostEffects.length,
        extraEffects: extraEffects.length,
      },
      outage,
      erpFaults: faultWindow && { ms: faultWindow[1] - faultWindow[0], deadLetters: deadLetters.length, gaveUpOrders: gaveUpOrders.length, failedMovements: failedMovements.length },
      deadLetters: dlCount,
      faults,
      checks,
      ok: checks.every((c) => c.ok),
    };
    return report;
  } finally {
    await load?.stop().catch(() => {});
    await erpWatch?.stop().catch(() => 0);
    probe?.end(true);
    await gateway?.stop();
    await stack?.stop();
  }
}

/** The report as the table docs/reliability.md keeps. */
export function formatReport(r: ChaosReport): string {
  const s = r.loadMs / 1000;
  const kills = r.faults.filter((f) => f.kind === 'kill -9').map((f) => f.target);
  const terms = r.faults.filter((f) => f.kind === 'SIGTERM').map((f) => f.target);
  const rows: [string, string][] = [
    ['load held', `${(r.orders.accepted / s).toFixed(1)} orders/s, ${(r.movements.accepted / s).toFixed(1)} movements/s for ${s.toFixed(0)} s ${r.viaGateway ? 'through nginx' : '(direct to the services, no nginx)'}`],
    ['faults injected', `kill -9: ${kills.join(', ') || 'none'}; SIGTERM: ${terms.join(', ') || 'none'}; ${r.outage ? `broker outage ${r.outage.ms / 1000} s; ` : ''}${r.erpFaults ? `ERP slow + random 429/500 for ${(r.erpFaults.ms / 1000).toFixed(0)} s` : ''}`],
    ['requests accepted', `${r.orders.accepted} orders (202) + ${r.orders.acceptedUnacknowledged} stored whose answer was lost; ${r.movements.accepted} movements in ${r.movements.imports} imports; ${r.orders.retries} client retries (502/no answer during restarts)`],
    ['outcomes', `orders ${r.orders.confirmed} confirmed, ${r.orders.rejected} rejected with a reason; movements ${r.movements.recorded} recorded, ${r.movements.failed} failed (dead-lettered)`],
    ['lost', `${r.orders.pending + r.erp.lostEffects + r.movements.unprocessed} (orders not final, movements unprocessed, ERP effects missing)`],
    ['duplicated', `${r.erp.extraEffects + r.orders.duplicated} effects (ERP records unique by operation id, one order per Idempotency-Key); ${r.erp.duplicateAttempts} duplicate attempts absorbed by the ERP`],
  ];
  if (r.outage) rows.push(['broker outage', `${r.outage.acceptedDuring} orders accepted during it, outboxes peaked at ${r.outage.maxOutboxPending} events, drained: ${r.outage.drained ? 'yes' : 'NO'}`]);
  rows.push(['dead letters', Object.entries(r.deadLetters).map(([k, v]) => `${k} ${v}`).join(', ') || 'none']);
  const w = Math.max(...rows.map(([k]) => k.length));
  const table = ['| what | figure |', '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join('\n');
  const checks = r.checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'} ${c.name.padEnd(w)}  ${c.detail}`).join('\n');
  return `${table}\n\n${checks}`;
}

/** The fuzz test at FUZZ_RUNS per route: the number of malformed requests it sent, and whether it passed. */
export function runFuzz(runs: number): Promise<{ ok: boolean; requests: number; routes: number; output: string }> {
  return new Promise((resolveFuzz) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', 'test/fuzz.test.ts'], {
      cwd: ROOT,
      env: { ...process.env, FUZZ_RUNS: String(runs) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('exit', (code) => {
      const m = /(\d+) malformed requests over (\d+) routes/.exec(output);
      resolveFuzz({ ok: code === 0, requests: Number(m?.[1] ?? 0), routes: Number(m?.[2] ?? 0), output });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
  const started = new Date();
  // Several broker nodes on Redis: each node is killed and stopped in its turn, where `broker` was.
  const brokerNodes = process.env.CHAOS_BROKER_NODES ? env('CHAOS_BROKER_NODES', 1) : undefined;
  const nodes = Array.from({ length: brokerNodes ?? 0 }, (_, i) => `broker-${i + 1}` as const);
  const report = await runChaos({
    ...(brokerNodes === undefined ? {} : { brokerNodes, kills: ['worker-1', 'orders', 'stock', ...nodes, 'erp'], terms: ['orders', 'stock', 'catalog', 'worker-1', ...nodes, 'erp'] }),
    ordersPerSecond: env('CHAOS_ORDERS_PER_SECOND', 40),
    movementsPerSecond: env('CHAOS_MOVEMENTS_PER_SECOND', 100),
    gapMs: env('CHAOS_GAP_MS', 10_000),
    downMs: env('CHAOS_DOWN_MS', 2000),
    outageMs: env('CHAOS_OUTAGE_MS', 20_000),
    erpFaultMs: env('CHAOS_ERP_FAULT_MS', 20_000),
  });
  console.log(`\n## Chaos run of ${started.toISOString()}\n\n${formatReport(report)}\n`);
  const fuzzRuns = env('FUZZ_RUNS', 1000);
  const fuzz = fuzzRuns > 0 ? await runFuzz(fuzzRuns) : undefined;
  if (fuzz) {
    console.log(`fuzz (FUZZ_RUNS=${fuzzRuns}): ${fuzz.requests} malformed requests over ${fuzz.routes} routes, ${fuzz.ok ? '0 answered 5xx, no process crashed' : 'FAILED'}`);
    if (!fuzz.ok) console.log(fuzz.output.slice(-4000));
  }
  mkdirSync(join(ROOT, 'test-output'), { recursive: true });
  writeFileSync(join(ROOT, 'test-output', 'chaos-last.json'), JSON.stringify({ started, report, fuzz: fuzz && { ok: fuzz.ok, requests: fuzz.requests, routes: fuzz.routes, runs: fuzzRuns } }, null, 2));
  process.exit(report.ok && (fuzz?.ok ?? true) ? 0 : 1);
}
