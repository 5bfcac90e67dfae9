// ERP sandbox process: config → database → HTTP → shutdown.
import { z } from 'zod';
import { bool, commonEnv, loadConfig, mqttEnv, port, positiveInt } from '../../lib/config.js';
import { dataFile } from '../../lib/db.js';
import { Service } from '../../lib/service.js';
import { answerAfterCommit, groupCommit } from '../../lib/group-commit.js';
import { PROCESSES } from '../../lib/processes.js';
import { ERP_OPERATION_COST_RU } from '../../lib/erp-operations.js';
import { createErp } from './app.js';
import { ErpStore } from './store.js';
import { Throttle } from './throttle.js';

/** A comma-separated list of e-mail domains, lower-cased. */
const domains = (list: string) => list.split(',').map((d) => d.trim().toLowerCase()).filter(Boolean);

const config = loadConfig({
  ...commonEnv,
  HTTP_PORT: port(PROCESSES.erp.ports.HTTP_PORT.port),
  ERP_CAPACITY_RU: positiveInt(200),
  ERP_ORDER_COST_RU: positiveInt(ERP_OPERATION_COST_RU.order),
  ERP_MOVEMENT_COST_RU: positiveInt(ERP_OPERATION_COST_RU['stock-movement']),
  ERP_BLOCKED_DOMAINS: z.string().default('blocked.example'),
  ERP_UNAVAILABLE_DOMAINS: z.string().default('unavailable.example'),
  /** Orders from these domains are answered 429 on their first attempt (a forced throttle for tests and demos). */
  ERP_THROTTLED_DOMAINS: z.string().default('throttled.example'),
  ERP_LATENCY_MS: z.coerce.number().int().min(0).max(60_000).default(0),
  ERP_ERROR_RATE: z.coerce.number().min(0).max(1).default(0),
  /** Share of calls answered 429 at random (Retry-After 100–500 ms), whatever the capacity left. */
  ERP_THROTTLE_RATE: z.coerce.number().min(0).max(1).default(0),
  /** Publish the live figures on woodytoys/public/stats/erp for the dashboard (needs the broker). */
  ERP_PUBLISH_STATS: bool(true),
  ...mqttEnv,
});
const service = new Service('erp', config, { clientId: 'erp-stats' });
const { log, metrics } = service;
const store = new ErpStore(dataFile(config.DATA_DIR, 'erp'));
// The records of one turn share a commit; an answer leaves only once its record is committed.
groupCommit(store.db);
const { app, snapshot } = createErp({
  store,
  throttle: new Throttle(config.ERP_CAPACITY_RU),
  costs: { order: config.ERP_ORDER_COST_RU, 'stock-movement': config.ERP_MOVEMENT_COST_RU },
  blockedDomains: domains(config.ERP_BLOCKED_DOMAINS),
  unavailableDomains: domains(config.ERP_UNAVAILABLE_DOMAINS),
  throttledDomains: domains(config.ERP_THROTTLED_DOMAINS),
  latencyMs: config.ERP_LATENCY_MS,
  errorRate: config.ERP_ERROR_RATE,
  throttleRate: config.ERP_THROTTLE_RATE,
  log,
  metrics,
});
await service.serve(answerAfterCommit(app, store.db), { capacity: config.ERP_CAPACITY_RU });
// The sandbox is not part of the message flow; it only shows its figures to the dashboard.
if (config.ERP_PUBLISH_STATS) service.publishStats(service.connect(service.clientId, { clean: true }), 'erp', () => snapshot(10));

service.stopOnSignal({ last: () => store.close() });
