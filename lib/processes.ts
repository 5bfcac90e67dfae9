// The system's processes, declared once: each one's entry file, default ports, MQTT user, the
// shared groups it joins and its route at the gateway. `npm start` (scripts/start-plan.ts), the
// gateway's routes (gateway/render.ts → nginx.conf), the development logins (broker/dev-logins.ts),
// the test stack and the processes table (`npm run -s processes`) are derived from it; compose.yaml,
// the ACL, .env.example, the entry files' default ports and any per-process npm script are checked
// against it (test/processes.test.ts).

/** A port a process listens on: its default, and the variable `npm start` sets it from. */
export interface PortDeclaration {
  port: number;
  /** npm start's variable for it (CATALOG_PORT, …); the process itself reads the key it sits under. */
  startVariable: string;
}

/** How the gateway sends `/api/<service>` to a process. */
export interface GatewayRoute {
  /** The path prefix: the exact path and everything under `<prefix>/` (never `<prefix>XYZ`). */
  prefix: string;
  /** nginx's client_max_body_size for the route: larger bodies get 413 at the gateway. */
  bodyLimit: string;
  /** Idle keep-alive connections nginx keeps open to the process. */
  keepalive: number;
}

export interface ProcessDeclaration {
  /** Process name: its npm script, its log prefix in npm start, its compose service (unless `composeService`). */
  name: string;
  /** The source entry point (compose runs its compiled `dist/…js`). */
  entry: string;
  /** Its listeners, by the variable the process reads (HTTP_PORT, MQTT_PORT, …). */
  ports: Readonly<Record<string, PortDeclaration>>;
  /**
   * The MQTT user it logs in as (broker/mosquitto/acl). Its client ids are the user's name or start
   * with `<user>-` (clientIdPatterns).
   */
  mqttUser?: string;
  /** Shared groups it joins (`$share/<group>/…`): the ACL's `#@ group` rules for its user. */
  groups: readonly string[];
  /** Its API at the gateway. */
  route?: GatewayRoute;
  /** Its admin routes need ADMIN_API_KEY. */
  adminKey?: boolean;
  /** Runs as several processes: npm start's count variable, and where the later ones' ports start. */
  replicas?: { countVariable: string; nextPort: PortDeclaration };
  /** compose.yaml's service name, when it is not `name`. */
  composeService?: string;
  /** Node flags it runs with, everywhere (npm start, its npm script, compose, the test harness). */
  nodeFlags?: readonly string[];
}

/** `node [flags] --import tsx <entry>`, as npm start and a process's npm script run it from source. */
export const sourceCommand = (p: Pick<ProcessDeclaration, 'entry' | 'nodeFlags'>, entry = p.entry): string => ['node', ...(p.nodeFlags ?? []), '--import', 'tsx', entry].join(' ');

/** The container's command: node [flags] and the compiled entry. */
export const compiledCommand = (p: Pick<ProcessDeclaration, 'entry' | 'nodeFlags'>): string[] => ['node', ...(p.nodeFlags ?? []), `dist/${p.entry.replace(/\.ts$/, '.js')}`];

const http = (port: number, startVariable: string) => ({ HTTP_PORT: { port, startVariable } });

/** Every process of the system, in the order npm start and the test stack start them. */
export const PROCESSES = {
  broker: {
    name: 'broker',
    entry: 'broker/main.ts',
    // V8's young generation at 4 MiB a half instead of 16: under a drain it grew to its full 32 MiB and
    // held buffers awaiting a scavenge; resident memory peaked about 25 MiB lower (docs/benchmarks.md).
    nodeFlags: ['--max-semi-space-size=4'],
    ports: {
      ...http(3006, 'BROKER_HTTP_PORT'),
      MQTT_PORT: { port: 1883, startVariable: 'MQTT_PORT' },
      MQTT_WS_PORT: { port: 8083, startVariable: 'MQTT_WS_PORT' },
    },
    groups: [],
  },
  erp: { name: 'erp', entry: 'sandbox/erp/main.ts', ports: http(3004, 'ERP_PORT'), mqttUser: 'erp', groups: [] },
  catalog: {
    name: 'catalog',
    entry: 'api/catalog/main.ts',
    ports: http(3001, 'CATALOG_PORT'),
    mqttUser: 'catalog',
    groups: [],
    route: { prefix: '/api/catalog', bodyLimit: '64k', keepalive: 32 },
    adminKey: true,
  },
  stock: {
    name: 'stock',
    entry: 'api/stock/main.ts',
    ports: http(3003, 'STOCK_PORT'),
    mqttUser: 'stock',
    groups: ['stock'],
    route: { prefix: '/api/stock', bodyLimit: '64k', keepalive: 32 },
    adminKey: true,
  },
  orders: {
    name: 'orders',
    entry: 'api/orders/main.ts',
    ports: http(3002, 'ORDERS_PORT'),
    mqttUser: 'orders',
    groups: [],
    route: { prefix: '/api/orders', bodyLimit: '16k', keepalive: 32 },
    adminKey: true,
  },
  deadletters: {
    name: 'deadletters',
    entry: 'api/deadletters/main.ts',
    ports: http(3007, 'DEADLETTERS_PORT'),
    mqttUser: 'deadletters',
    groups: ['deadletters'],
    // Admin only, and few callers: fewer idle connections.
    route: { prefix: '/api/deadletters', bodyLimit: '16k', keepalive: 8 },
    adminKey: true,
  },
  worker: {
    name: 'worker',
    entry: 'workers/main.ts',
    ports: http(3005, 'WORKER_PORT'),
    mqttUser: 'worker',
    groups: ['order-workers', 'stock-workers'],
    replicas: { countVariable: 'WORKERS', nextPort: { port: 3011, startVariable: 'WORKER_PORT_NEXT' } },
    composeService: 'workers',
  },
} as const satisfies Record<string, ProcessDeclaration>;

export type ProcessName = keyof typeof PROCESSES;
export const PROCESS_LIST: readonly ProcessDeclaration[] = Object.values(PROCESSES);

/** The gateway (nginx, not a Node process): where it listens by default. */
export const GATEWAY_PORT = 8080;
/**
 * The gateway's MQTT-over-TCP listener in compose (nginx.conf's stream block, in front of every
 * broker node's MQTT_PORT): every process's MQTT_URL there. Local runs have it only when
 * GATEWAY_MQTT_PORT is set.
 */
export const GATEWAY_MQTT_PORT = 1883;

/**
 * The read-only MQTT user of displays and the dashboard: a login without a process of its own
 * (the gateway serves it at /config.json).
 */
export const VIEWER_USER = 'viewer';

type DeclaredUser = { [K in ProcessName]: (typeof PROCESSES)[K] extends { mqttUser: infer U extends string } ? U : never }[ProcessName];
/** Every MQTT user of the system. */
export type MqttUser = DeclaredUser | typeof VIEWER_USER;

/** The MQTT users of these processes, then the viewer: one each, in declaration order. */
export function mqttUsers(processes: readonly ProcessDeclaration[]): string[] {
  return [...new Set([...processes.flatMap((p) => (p.mqttUser ? [p.mqttUser] : [])), VIEWER_USER])];
}

export const MQTT_USERS = mqttUsers(PROCESS_LIST) as readonly MqttUser[];

/** The client ids a user may connect with, as the ACL's `#@ clientid` rule writes them. */
export const clientIdPatterns = (user: string) => [user, `${user}-*`];

/** The processes the gateway routes to. */
export const routedProcesses = (processes: readonly ProcessDeclaration[]) =>
  processes.filter((p): p is ProcessDeclaration & { route: GatewayRoute } => p.route !== undefined);

/** The gateway's variable for a routed process's host:port (ORDERS_UPSTREAM, …). */
export const upstreamVariable = (p: ProcessDeclaration) => `${p.name.toUpperCase()}_UPSTREAM`;

/** The nginx upstream block's name for a process. */
export const upstreamName = (p: ProcessDeclaration) => p.name;

/** The process's HTTP port declaration (every process has one: health, readiness, metrics). */
export function httpPort(p: ProcessDeclaration): PortDeclaration {
  const port = p.ports.HTTP_PORT;
  if (!port) throw new Error(`process ${p.name} declares no HTTP_PORT`);
  return port;
}

/** Every port variable npm start reads, with its default. */
export function startPorts(processes: readonly ProcessDeclaration[]): PortDeclaration[] {
  return processes.flatMap((p) => [...Object.values(p.ports), ...(p.replicas ? [p.replicas.nextPort] : [])]);
}

export const composeService = (p: ProcessDeclaration) => p.composeService ?? p.name;

/** The processes table `npm run -s processes` prints (the README points to it rather than holding a copy). */
export function processTable(processes: readonly ProcessDeclaration[]): string {
  const code = (s: string) => `\`${s}\``;
  const rows = processes.map((p) => {
    const ports = Object.entries(p.ports).map(([variable, d]) => `${variable === 'HTTP_PORT' ? '' : `${variable} `}${d.port} (${code(d.startVariable)})`);
    if (p.replicas) ports.push(`next ones from ${p.replicas.nextPort.port} (${code(p.replicas.nextPort.startVariable)})`);
    return [
      code(`npm run ${p.name}`),
      ports.join(', '),
      p.mqttUser ? `${code(p.mqttUser)} (${clientIdPatterns(p.mqttUser).map(code).join(', ')})` : '—',
      p.groups.length ? p.groups.map(code).join(', ') : '—',
      p.route ? `${code(`${p.route.prefix}`)}, bodies ≤ ${p.route.bodyLimit}` : '—',
    ];
  });
  return [
    '| process | ports: HTTP, others named (npm start\'s variable) | MQTT user (client ids) | shared groups | gateway route |',
    '|---|---|---|---|---|',
    ...rows.map((cells) => `| ${cells.join(' | ')} |`),
    `| gateway (nginx) | ${GATEWAY_PORT} (${code('GATEWAY_PORT')}), MQTT over TCP ${GATEWAY_MQTT_PORT} in compose (${code('GATEWAY_MQTT_PORT')}) | — | — | everything else: \`/mqtt\`, the dashboard |`,
    `| displays, dashboard | — | ${code(VIEWER_USER)} (${clientIdPatterns(VIEWER_USER).map(code).join(', ')}), read-only | — | — |`,
  ].join('\n');
}
