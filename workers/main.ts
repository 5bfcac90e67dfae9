// Worker process: config → lease store and keeper → pacer → MQTT (one publisher, one consuming
// connection per workflow) → HTTP health/metrics → shutdown. Two workflows share the ERP, orders
// and stock movements, through one lease keeper and one pacer (the Rate Limiting pattern).
//
// Each workflow's connection is one member of its shared group and holds CONSUMER_CONCURRENCY
// messages at once (lib/mqtt.ts consume): that many operations wait for pacing credit or run
// against the ERP, and each message is acknowledged only after its operation succeeded.
import { hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { Counter, Gauge } from 'prom-client';
import { commonEnv, loadConfig, mqttEnv, port, positiveInt, url } from '../lib/config.js';
import { initialSpending, leaseDemand, observeSpending } from '../lib/leases/demand.js';
import { LeaseKeeper } from '../lib/leases/keeper.js';
import { SqliteLeaseStore } from '../lib/leases/sqlite.js';
import type { LeaseStore } from '../lib/leases/store.js';
import { createApp } from '../lib/http.js';
import { consumerEnv, type MqttClient, type Route } from '../lib/mqtt.js';
import { Pacer } from '../lib/pacing.js';
import { Service } from '../lib/service.js';
import { SHARED_GROUPS, shareOf } from '../lib/topics.js';
import { PROCESSES } from '../lib/processes.js';
import { ERP_OPERATION_COST_RU } from '../lib/erp-operations.js';
import { BrokerBacklog } from './backlog.js';
import { ERP_CONNECTIONS, ErpClient, type ErpOperation } from './erp-client.js';
import { SOURCE, orderWorkerRoutes } from './order-worker.js';
import { pacedErp } from './paced-erp.js';
import { stockWorkerRoutes } from './stock-worker.js';

const config = loadConfig({
  ...commonEnv,
  ...mqttEnv,
  ...consumerEnv,
  HTTP_PORT: port(PROCESSES.worker.ports.HTTP_PORT.port),
  ERP_URL: url('http://127.0.0.1:3004'),
  ERP_TIMEOUT_MS: positiveInt(5000),
  WORKER_MAX_ATTEMPTS: positiveInt(8),
  /** ERP attempts per workflow under way at once (waiting for pacing credit or at the ERP); more messages may be in hand. */
  WORKER_ERP_CONCURRENCY: z.coerce.number().int().min(1).max(1024).default(128),
  /** Keep-alive connections to the ERP, each carrying up to 4 requests at once (HTTP/1.1 pipelining). */
  WORKER_ERP_CONNECTIONS: z.coerce.number().int().min(1).max(256).default(ERP_CONNECTIONS),
  /** Stable per worker process: its persistent MQTT sessions (and queued messages) are keyed by it. */
  WORKER_ID: z.string().regex(/^[A-Za-z0-9_.-]{1,48}$/).default(`worker-${hostname()}`.slice(0, 48)),
  /** `shared` joins the order-workers / stock-workers groups ($share/…) so several workers split the work. */
  WORKER_SUBSCRIPTION: z.enum(['shared', 'plain']).default('shared'),
  /** Request units an order / a stock movement costs at the ERP (the ERP's ERP_*_COST_RU). */
  WORKER_ORDER_COST_RU: positiveInt(ERP_OPERATION_COST_RU.order),
  WORKER_MOVEMENT_COST_RU: positiveInt(ERP_OPERATION_COST_RU['stock-movement']),
  /** Capacity this process uses without a lease; leave it out of LEASE_CAPACITY_RU. */
  WORKER_RESERVED_RU: z.coerce.number().int().min(0).default(0),
  /** The broker's Prometheus endpoint: per-group backlog for lease demand; unset = local estimate. */
  BROKER_METRICS_URL: z.url().optional(),
  LEASE_STORE: z.enum(['sqlite', 'redis']).default('sqlite'),
  /** SQLite lease file, shared by every worker on the host. Default: DATA_DIR/leases.db. */
  LEASE_FILE: z.string().min(1).optional(),
  LEASE_REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL').default('redis://127.0.0.1:6379'),
  /** The ERP capacity shared by leases (RU/s) and the partitions it is split into. */
  LEASE_CAPACITY_RU: positiveInt(200),
  LEASE_PARTITIONS: positiveInt(20),
  LEASE_TTL_MS: z.coerce.number().int().min(1000).max(600_000).default(15_000),
  /** How often the keeper re-reads demand, acquires and renews. */
  LEASE_TICK_MS: z.coerce.number().int().min(20).max(10_000).default(250),
  /** Pacing slice: credit is released this often (the pattern suggests 100–200 ms). */
  PACING_SLICE_MS: z.coerce.number().int().min(10).max(1000).default(100),
});
const service = new Service('worker', config, { clientId: config.WORKER_ID });
const { log, metrics, clientId } = service;
const registers = [metrics.registry];
const erpCalls = new Counter({ name: 'worker_erp_calls_total', help: 'ERP calls by result and kind', labelNames: ['result', 'kind'] as const, registers });
const retries = new Counter({ name: 'worker_erp_retries_total', help: 'ERP calls that were retries (after a 429 or an error)', labelNames: ['kind'] as const, registers });
const throttled = new Counter({ name: 'worker_erp_throttled_total', help: 'ERP answers 429 (throttled)', labelNames: ['kind'] as const, registers });
const messages = new Counter({ name: 'worker_messages_total', help: 'Messages handled by workflow and outcome (ok, deadletter, retry)', labelNames: ['workflow', 'outcome'] as const, registers });
const deadLetters = new Counter({ name: 'worker_dead_letters_total', help: 'Messages sent to the dead letters', labelNames: ['workflow'] as const, registers });

const owner = `${clientId}:${process.pid}`;
const costs: Record<ErpOperation['kind'], number> = { order: config.WORKER_ORDER_COST_RU, 'stock-movement': config.WORKER_MOVEMENT_COST_RU };

interface Workflow {
  name: 'orders' | 'movements';
  kind: ErpOperation['kind'];
  /** Consumer name (dead-letter topic) and shared group. */
  group: string;
  topic: string;
  tag: string;
}
const workflows: Workflow[] = [
  { name: 'orders', kind: 'order', group: 'order-workers', topic: SHARED_GROUPS['order-workers'][0], tag: 'o' },
  { name: 'movements', kind: 'stock-movement', group: 'stock-workers', topic: SHARED_GROUPS['stock-workers'][0], tag: 'm' },
];
const filterOf = (wf: Workflow) => (config.WORKER_SUBSCRIPTION === 'shared' ? shareOf(wf.group, wf.topic) : wf.topic);

// --- capacity: leases, pacing, backlog -------------------------------------------------------
// ioredis is loaded only when the leases live in Redis: on SQLite it would only add to every
// worker's start-up CPU and resident memory.
const store: LeaseStore =
  config.LEASE_STORE === 'redis'
    ? new (await import('../lib/leases/redis.js')).RedisLeaseStore({ url: config.LEASE_REDIS_URL })
    : new SqliteLeaseStore({ file: config.LEASE_FILE ?? join(config.DATA_DIR, 'leases.db') });
const pacer = new Pacer({ capacity: config.WORKER_RESERVED_RU, sliceMs: config.PACING_SLICE_MS });
const backlog = new BrokerBacklog({ metricsUrl: config.BROKER_METRICS_URL, shares: Object.fromEntries(workflows.map((wf) => [wf.kind, filterOf(wf)])), log });
const inProgress = new Map<ErpOperation['kind'], number>(workflows.map((wf) => [wf.kind, 0]));

/** Messages waiting per workflow: the broker's count for the whole group, else what this process holds. */
const backlogOf = (kind: ErpOperation['kind']) => backlog.get(kind) ?? pacer.waiting(kind) + (inProgress.get(kind) ?? 0);

// Lease demand (lib/leases/demand.ts) is read on each keeper tick: the policy gets the backlogs,
// the spending and the pacer's state, and its answer goes to the pacer (weights) and the keeper (RU/s).
let spending = initialSpending(Date.now());
const demand = (): number => {
  spending = observeSpending(spending, pacer.spent, Date.now());
  const { ru, weights } = leaseDemand({
    workflows: workflows.map((wf) => ({ kind: wf.kind, messages: backlogOf(wf.kind), cost: costs[wf.kind] })),
    groupBacklog: backlog.get('order') !== undefined,
    members: keeper.members,
    spendingRate: spending.rate,
    waiting: pacer.waiting(),
    capacity: pacer.capacity,
    partitionCapacity: config.LEASE_CAPACITY_RU / config.LEASE_PARTITIONS,
  });
  pacer.setWeights(weights);
  return ru;
};
// Leased capacity flows one way: lease store → keeper → pacer (setCapacity) → Bottleneck's reservoir.
const keeper: LeaseKeeper = new LeaseKeeper({
  store,
  owner,
  capacity: config.LEASE_CAPACITY_RU,
  partitions: config.LEASE_PARTITIONS,
  reservedCapacity: config.WORKER_RESERVED_RU,
  ttlMs: config.LEASE_TTL_MS,
  tickMs: config.LEASE_TICK_MS,
  log,
  demand,
  onChange(capacity, held) {
    pacer.setCapacity(capacity);
    log.debug({ capacity, partitions: held.map((h) => `${h.partition}@${h.epoch}`) }, 'capacity retuned');
  },
});

new Gauge({ name: 'worker_lease_partitions', help: 'Capacity partitions leased now', registers, collect() { this.set(keeper.held.length); } });
new Gauge({ name: 'worker_leased_capacity_ru', help: 'Capacity usable now, RU/s: leases plus reserved', registers, collect() { this.set(keeper.capacity); } });
new Gauge({ name: 'worker_pacing_rate_ru', help: 'RU/s the pacer releases now (after any 429 cut)', registers, collect() { this.set(pacer.rate); } });
new Gauge({ name: 'worker_lease_members', help: 'Worker processes wanting capacity at the last lease tick', registers, collect() { this.set(keeper.members); } });
new Gauge({ name: 'worker_lease_store_up', help: '1 while the lease store answers', registers, collect() { this.set(keeper.storeReachable ? 1 : 0); } });
new Gauge({
  name: 'worker_backlog_messages',
  help: 'Messages waiting per workflow (the broker group queue, else local)',
  labelNames: ['workflow'] as const,
  registers,
  collect() {
    for (const wf of workflows) this.set({ workflow: wf.name }, backlogOf(wf.kind));
  },
});

// --- MQTT -------------------------------------------------------------------------------------
// Outcomes and dead letters go out on their own connection (see lib/mqtt.ts on why).
const publisher = service.publisher();
const erp = new ErpClient(config.ERP_URL, config.ERP_TIMEOUT_MS, { connections: config.WORKER_ERP_CONNECTIONS });
new Gauge({ name: 'worker_erp_connections', help: 'Connections to the ERP open now (at most WORKER_ERP_CONNECTIONS)', registers, collect() { this.set(erp.connections); } });
const paced = pacedErp({
  erp,
  pacer,
  costs,
  maxAttempts: config.WORKER_MAX_ATTEMPTS,
  concurrency: config.WORKER_ERP_CONCURRENCY,
  onResult: (result, kind) => {
    erpCalls.inc({ result, kind });
    if (result === 'throttled') throttled.inc({ kind });
  },
  onRetry: (kind) => retries.inc({ kind }),
});
const record: typeof paced = async (op, hops) => {
  inProgress.set(op.kind, (inProgress.get(op.kind) ?? 0) + 1);
  try {
    return await paced(op, hops);
  } finally {
    inProgress.set(op.kind, inProgress.get(op.kind)! - 1);
  }
};
const routes: Record<Workflow['name'], Route[]> = {
  orders: orderWorkerRoutes({ publisher, record, log }),
  movements: stockWorkerRoutes({ publisher, record, log }),
};

pacer.start();
backlog.start();

const consumers: MqttClient[] = [];
const app = createApp({ log, metrics, ready: () => ({ consumers: consumers.length > 0 && consumers.every((c) => c.connected), publisher: publisher.connected }) });
await service.serve(app, { workerId: config.WORKER_ID, subscription: config.WORKER_SUBSCRIPTION, leaseStore: store.kind });

// One workflow at a time, each group joined before the next: whoever waits for this process's
// first "subscribed" line then knows the order group exists and keeps what it is sent. (The client
// ids end in 1: earlier versions held several connections per workflow, -o1 … -oN.)
for (const wf of workflows) {
  const { client, subscribed } = service.consume({
    clientId: `${clientId}-${wf.tag}1`,
    consumer: wf.group,
    publisher,
    source: SOURCE,
    routes: routes[wf.name],
    filters: [filterOf(wf)],
    onOutcome: (outcome) => {
      messages.inc({ workflow: wf.name, outcome });
      if (outcome === 'deadletter') deadLetters.inc({ workflow: wf.name });
    },
  });
  consumers.push(client);
  // Capacity is claimed once this process can spend it, when its first consuming connection is up: a
  // worker still starting would take its fair share of the partitions (and the others would give
  // theirs up) while it spends none. Not later: a session's backlog may reach us before the SUBACK
  // and hold it back until capacity moves the messages in hand.
  client.once('connect', () => keeper.start());
  await subscribed;
}
log.info({ connections: consumers.length }, 'worker consuming');

// Leases, pace and backlog for displays and the dashboard: woodytoys/public/stats/workers/<id>, retained.
service.publishStats(publisher, `workers/${config.WORKER_ID}`, () => ({
  workerId: config.WORKER_ID,
  leasedPartitions: keeper.held.length,
  partitions: config.LEASE_PARTITIONS,
  capacityRu: keeper.capacity,
  rateRuPerSec: pacer.rate,
  members: keeper.members,
  backlog: Object.fromEntries(workflows.map((wf) => [wf.name, backlogOf(wf.kind)])),
}));

// After the consumers drained and the MQTT sessions closed: nothing calls the ERP or spends capacity any more.
service.stopOnSignal({
  async last() {
    await erp.close();
    backlog.stop();
    await pacer.stop();
    await keeper.stop();
    await store.close();
  },
});
