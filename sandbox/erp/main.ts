// ERP sandbox process: config → database → HTTP → shutdown.
import { z } from 'zod';
import { commonEnv, loadConfig, port, positiveInt } from '../../lib/config.js';
import { dataFile } from '../../lib/db.js';
import { serveApp } from '../../lib/http.js';
import { createLogger } from '../../lib/log.js';
import { createMetrics } from '../../lib/metrics.js';
import { onShutdown } from '../../lib/shutdown.js';
import { createErpApp } from './app.js';
import { ErpStore } from './store.js';
import { Throttle } from './throttle.js';

const config = loadConfig({
  ...commonEnv,
  HTTP_PORT: port(3004),
  ERP_CAPACITY_RU: positiveInt(200),
  ERP_ORDER_COST_RU: positiveInt(10),
  ERP_MOVEMENT_COST_RU: positiveInt(10),
  ERP_BLOCKED_DOMAINS: z.string().default('blocked.example'),
  ERP_LATENCY_MS: z.coerce.number().int().min(0).max(60_000).default(0),
  ERP_ERROR_RATE: z.coerce.number().min(0).max(1).default(0),
});
const log = createLogger('erp', config.LOG_LEVEL);
const store = new ErpStore(dataFile(config.DATA_DIR, 'erp'));
const app = createErpApp({
  store,
  throttle: new Throttle(config.ERP_CAPACITY_RU),
  costs: { order: config.ERP_ORDER_COST_RU, 'stock-movement': config.ERP_MOVEMENT_COST_RU },
  blockedDomains: config.ERP_BLOCKED_DOMAINS.split(',').map((d) => d.trim().toLowerCase()).filter(Boolean),
  latencyMs: config.ERP_LATENCY_MS,
  errorRate: config.ERP_ERROR_RATE,
  log,
  metrics: createMetrics('erp'),
});
const http = await serveApp(app, config.HTTP_PORT, config.HTTP_HOST);
log.info({ http: `http://${config.HTTP_HOST}:${http.port}`, capacity: config.ERP_CAPACITY_RU }, 'erp listening');

onShutdown(log, async () => {
  await http.close();
  store.close();
});
