// Renders the repository's nginx.conf for local runs (npm start, tests, bench): substitutes the
// known ${…} placeholders, exactly as the official nginx image's envsubst does in compose, and
// writes a runnable config plus its runtime directory (pid, temp files, API keys) so nginx runs as
// a normal user without touching /var. The services' upstreams and API routes are generated from
// the process declaration (lib/processes.ts) between nginx.conf's `@generated` markers: local runs
// always use the declaration, compose uses the checked-in file, which test/processes.test.ts keeps
// equal to it. The MQTT-over-TCP listener (nginx.conf's `@optional mqtt-tcp` block) is kept in local
// runs only when GATEWAY_MQTT_PORT is set, with nginx's stream module loaded where it is a dynamic one.
//
//   npm run gateway:render               writes $DATA_DIR/gateway/nginx.conf, prints the nginx command
//   npm run -s gateway:render -- --env   prints every placeholder's value as KEY=value (for compose)
//   npm run gateway:routes               rewrites nginx.conf's generated parts from the declaration
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { loadConfig, parseConfig, port, positiveInt } from '../lib/config.js';
import { findProgram } from '../lib/programs.js';
import { GATEWAY_PORT, PROCESS_LIST, httpPort, routedProcesses, upstreamName, upstreamVariable, type ProcessDeclaration } from '../lib/processes.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const TEMPLATE = join(ROOT, 'nginx.conf');

// Values end up inside nginx directives: nothing that could close a directive or start a variable.
const nginxWord = z.string().regex(/^[^\s;'"{}$\\]+$/, 'no spaces, quotes, braces, ; $ or \\');
const upstream = (fallback: string) =>
  z
    .string()
    .regex(/^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}$/, 'must be host:port')
    .default(fallback);
const apiKey = /^[A-Za-z0-9._~+/=-]{8,256}$/;

/** Each routed process's host:port (ORDERS_UPSTREAM, …), by default its declared port on loopback. */
export const upstreamEnv = (processes: readonly ProcessDeclaration[]) =>
  Object.fromEntries(routedProcesses(processes).map((p) => [upstreamVariable(p), upstream(`127.0.0.1:${httpPort(p).port}`)]));

export const gatewayEnv = {
  DATA_DIR: z.string().min(1).default('./data'),
  /** Interface and port nginx listens on. */
  GATEWAY_HOST: nginxWord.default('127.0.0.1'),
  GATEWAY_PORT: port(GATEWAY_PORT),
  ...upstreamEnv(PROCESS_LIST),
  MQTT_WS_UPSTREAM: upstream('127.0.0.1:8083'),
  /** MQTT over TCP at the gateway, to MQTT_TCP_UPSTREAM (compose: 1883). Unset: no such listener. */
  GATEWAY_MQTT_PORT: z.coerce.number().int().min(1).max(65535).optional(),
  MQTT_TCP_UPSTREAM: upstream('127.0.0.1:1883'),
  /** MQTT connections one client address may hold through the gateway, counted from the first byte. */
  GATEWAY_MQTT_CONN_PER_IP: positiveInt(64),
  GATEWAY_READ_RATE_PER_MIN: positiveInt(300),
  GATEWAY_READ_BURST: z.coerce.number().int().min(0).default(50),
  GATEWAY_WRITE_RATE_PER_MIN: positiveInt(60),
  GATEWAY_WRITE_BURST: z.coerce.number().int().min(0).default(10),
  /** The key tier: clients that send a key listed in GATEWAY_API_KEYS (partners, `npm run load`). */
  GATEWAY_KEY_READ_RATE_PER_MIN: positiveInt(30_000),
  GATEWAY_KEY_READ_BURST: z.coerce.number().int().min(0).default(500),
  GATEWAY_KEY_WRITE_RATE_PER_MIN: positiveInt(6000),
  GATEWAY_KEY_WRITE_BURST: z.coerce.number().int().min(0).default(100),
  /** Seconds in a 429's Retry-After; default: the time one request takes to refill, ceil(60 / rate). */
  GATEWAY_READ_RETRY_AFTER: z.coerce.number().int().positive().optional(),
  GATEWAY_WRITE_RETRY_AFTER: z.coerce.number().int().positive().optional(),
  GATEWAY_KEY_READ_RETRY_AFTER: z.coerce.number().int().positive().optional(),
  GATEWAY_KEY_WRITE_RETRY_AFTER: z.coerce.number().int().positive().optional(),
  GATEWAY_CONN_PER_IP: positiveInt(50),
  /** Comma-separated API keys that get a bucket of their own, at the key tier's rates (others are counted by IP). */
  GATEWAY_API_KEYS: z
    .string()
    .transform((s) => s.split(',').map((k) => k.trim()).filter(Boolean))
    .pipe(z.array(z.string().regex(apiKey, 'each API key: 8-256 of A-Z a-z 0-9 . _ ~ + / = -')))
    .default([]),
  GATEWAY_WORKER_PROCESSES: z.union([z.literal('auto'), z.coerce.number().int().positive()]).default('auto'),
  /**
   * Default: access.log in the runtime directory. /dev/stdout works in a container, but not where
   * stdout is a socket (node's child processes, concurrently): nginx cannot open(2) a socket.
   */
  GATEWAY_ACCESS_LOG: nginxWord.optional(),
  GATEWAY_DASHBOARD_DIR: nginxWord.optional(),
  GATEWAY_RUNTIME_DIR: nginxWord.optional(),
  /**
   * The dashboard's MQTT login, served at /config.json: the read-only viewer. Empty means
   * anonymous (a development broker). Restricted so it can sit inside a JSON string in nginx.conf.
   */
  DASHBOARD_MQTT_USERNAME: z.string().regex(/^[A-Za-z0-9._~-]*$/).default(''),
  DASHBOARD_MQTT_PASSWORD: z.string().regex(/^[A-Za-z0-9._~-]*$/).default(''),
};

export type GatewayConfig = ReturnType<typeof parseConfig<typeof gatewayEnv>>;

/** The value of every placeholder in nginx.conf, from a parsed config. */
export function placeholders(config: GatewayConfig): Record<string, string> {
  const retryAfter = (perMin: number) => String(Math.ceil(60 / perMin));
  return {
    GATEWAY_HOST: config.GATEWAY_HOST,
    GATEWAY_PORT: String(config.GATEWAY_PORT),
    ...Object.fromEntries(routedProcesses(PROCESS_LIST).map((p) => [upstreamVariable(p), String((config as Record<string, unknown>)[upstreamVariable(p)])])),
    MQTT_WS_UPSTREAM: config.MQTT_WS_UPSTREAM,
    // Without a port the mqtt-tcp block is dropped before substitution (localTemplate).
    GATEWAY_MQTT_PORT: String(config.GATEWAY_MQTT_PORT ?? ''),
    MQTT_TCP_UPSTREAM: config.MQTT_TCP_UPSTREAM,
    GATEWAY_MQTT_CONN_PER_IP: String(config.GATEWAY_MQTT_CONN_PER_IP),
    GATEWAY_READ_RATE_PER_MIN: String(config.GATEWAY_READ_RATE_PER_MIN),
    GATEWAY_READ_BURST: String(config.GATEWAY_READ_BURST),
    GATEWAY_WRITE_RATE_PER_MIN: String(config.GATEWAY_WRITE_RATE_PER_MIN),
    GATEWAY_WRITE_BURST: String(config.GATEWAY_WRITE_BURST),
    GATEWAY_KEY_READ_RATE_PER_MIN: String(config.GATEWAY_KEY_READ_RATE_PER_MIN),
    GATEWAY_KEY_READ_BURST: String(config.GATEWAY_KEY_READ_BURST),
    GATEWAY_KEY_WRITE_RATE_PER_MIN: String(config.GATEWAY_KEY_WRITE_RATE_PER_MIN),
    GATEWAY_KEY_WRITE_BURST: String(config.GATEWAY_KEY_WRITE_BURST),
    GATEWAY_READ_RETRY_AFTER: String(config.GATEWAY_READ_RETRY_AFTER ?? retryAfter(config.GATEWAY_READ_RATE_PER_MIN)),
    GATEWAY_WRITE_RETRY_AFTER: String(config.GATEWAY_WRITE_RETRY_AFTER ?? retryAfter(config.GATEWAY_WRITE_RATE_PER_MIN)),
    GATEWAY_KEY_READ_RETRY_AFTER: String(config.GATEWAY_KEY_READ_RETRY_AFTER ?? retryAfter(config.GATEWAY_KEY_READ_RATE_PER_MIN)),
    GATEWAY_KEY_WRITE_RETRY_AFTER: String(config.GATEWAY_KEY_WRITE_RETRY_AFTER ?? retryAfter(config.GATEWAY_KEY_WRITE_RATE_PER_MIN)),
    GATEWAY_CONN_PER_IP: String(config.GATEWAY_CONN_PER_IP),
    GATEWAY_WORKER_PROCESSES: String(config.GATEWAY_WORKER_PROCESSES),
    GATEWAY_ACCESS_LOG: config.GATEWAY_ACCESS_LOG ?? join(runtimeDir(config), 'access.log'),
    GATEWAY_DASHBOARD_DIR: resolve(config.GATEWAY_DASHBOARD_DIR ?? join(ROOT, 'dashboard')),
    GATEWAY_RUNTIME_DIR: runtimeDir(config),
    DASHBOARD_MQTT_USERNAME: config.DASHBOARD_MQTT_USERNAME,
    DASHBOARD_MQTT_PASSWORD: config.DASHBOARD_MQTT_PASSWORD,
  };
}

export const runtimeDir = (config: GatewayConfig) => resolve(config.GATEWAY_RUNTIME_DIR ?? join(config.DATA_DIR, 'gateway'));

/**
 * Substitutes `${NAME}` for the given names only (nginx's own `$name` variables are left alone) and
 * refuses a template that still has a `${…}` placeholder nobody filled in.
 */
export function substitute(template: string, values: Record<string, string>): string {
  const text = template.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole, name: string) => values[name] ?? whole);
  const left = [...new Set(text.match(/\$\{[A-Za-z_][A-Za-z0-9_]*\}/g) ?? [])];
  if (left.length > 0) throw new Error(`nginx.conf has placeholders with no value: ${left.join(', ')}`);
  return text;
}

/** The map entries of api-keys.map: each known key stands for itself. */
export function apiKeysMap(keys: readonly string[]): string {
  const lines = [...new Set(keys)].map((k) => `"${k}" "key:${k}";`);
  return `# Generated by gateway/render.ts from GATEWAY_API_KEYS; one bucket per listed key.\n${lines.join('\n')}\n`;
}

export interface RenderedGateway {
  /** Where nginx runs: the -p prefix, also holding the config, pid and temp files. */
  dir: string;
  confFile: string;
  /** Base URL of the gateway, e.g. http://127.0.0.1:8080. */
  url: string;
  config: GatewayConfig;
  /** Where the JSON access log goes. */
  accessLog: string;
  /** Arguments for nginx to run this config in the foreground. */
  args: string[];
}

/** Parses `env`, writes <runtime dir>/nginx.conf and api-keys.map; throws ConfigError on a bad value. */
export function renderGateway(env: NodeJS.ProcessEnv = process.env): RenderedGateway {
  const config = parseConfig(gatewayEnv, env);
  return writeGateway(config);
}

function writeGateway(config: GatewayConfig): RenderedGateway {
  const values = placeholders(config);
  const dir = values.GATEWAY_RUNTIME_DIR!;
  mkdirSync(dir, { recursive: true });
  const confFile = join(dir, 'nginx.conf');
  const template = localTemplate(withRoutes(readFileSync(TEMPLATE, 'utf8'), PROCESS_LIST), { mqttTcp: config.GATEWAY_MQTT_PORT !== undefined });
  writeFileSync(confFile, substitute(template, values));
  writeFileSync(join(dir, 'api-keys.map'), apiKeysMap(config.GATEWAY_API_KEYS));
  const host = config.GATEWAY_HOST === '0.0.0.0' ? '127.0.0.1' : config.GATEWAY_HOST;
  return { dir, confFile, url: `http://${host}:${config.GATEWAY_PORT}`, config, accessLog: values.GATEWAY_ACCESS_LOG!, args: nginxArgs(dir, confFile) };
}

const MARKER = (part: string) => new RegExp(`^([ \\t]*)# @generated ${part}:.*\\n[\\s\\S]*?^[ \\t]*# @end ${part}\\n`, 'm');

/** nginx's upstream blocks and API locations for these processes (the `@generated` parts of nginx.conf). */
export function renderRoutes(processes: readonly ProcessDeclaration[]): { upstreams: string[]; routes: string[] } {
  const routed = routedProcesses(processes);
  const upstreams = routed.flatMap((p) => [`upstream ${upstreamName(p)} {`, `    server \${${upstreamVariable(p)}};`, `    keepalive ${p.route.keepalive};`, '    keepalive_timeout 60s;', '}']);
  const routes = routed.flatMap((p) =>
    [`= ${p.route.prefix}`, `${p.route.prefix}/`].flatMap((match) => [`location ${match} {`, `    client_max_body_size ${p.route.bodyLimit};`, `    proxy_pass http://${upstreamName(p)};`, '}']),
  );
  return { upstreams, routes };
}

/** The template with its `@generated` parts rendered from these processes (indentation kept). */
export function withRoutes(template: string, processes: readonly ProcessDeclaration[]): string {
  const rendered = renderRoutes(processes);
  let text = template;
  for (const part of ['upstreams', 'routes'] as const) {
    const marker = MARKER(part);
    if (!marker.test(text)) throw new Error(`nginx.conf: no "# @generated ${part}: …" … "# @end ${part}" block`);
    text = text.replace(marker, (_block, indent: string) =>
      [`# @generated ${part}: from lib/processes.ts by \`npm run gateway:routes\`; edit the declaration, not these lines`, ...rendered[part], `# @end ${part}`]
        .map((line) => (line ? `${indent}${line}` : line))
        .join('\n') + '\n',
    );
  }
  return text;
}

const OPTIONAL = (part: string) => new RegExp(`^[ \\t]*# @optional ${part}:.*\\n[\\s\\S]*?^[ \\t]*# @end ${part}\\n`, 'm');

/**
 * How this machine's nginx gets its stream module (MQTT over TCP): built in (nothing to do, as in
 * the official image), a dynamic module to load (Debian's libnginx-mod-stream), or missing.
 */
export function streamModule(nginxVersionOutput?: string): { load?: string } | { missing: string } {
  const nginx = findProgram('nginx');
  const output = nginxVersionOutput ?? (nginx ? spawnSync(nginx, ['-V'], { encoding: 'utf8' }).stderr : '');
  const install = 'nginx without its stream module (apt-get install -y libnginx-mod-stream)';
  if (/--with-stream(\s|$)/.test(output)) return {};
  if (!/--with-stream=dynamic/.test(output)) return { missing: install };
  const file = join(/--modules-path=(\S+)/.exec(output)?.[1] ?? '/usr/lib/nginx/modules', 'ngx_stream_module.so');
  return existsSync(file) ? { load: file } : { missing: install };
}

/**
 * The template as local nginx runs it: with the `@optional mqtt-tcp` block (and the stream module
 * loaded first where this nginx has it as a dynamic module), or without it. Compose's nginx image
 * takes the file as it is: the stream module is built in there.
 */
export function localTemplate(template: string, { mqttTcp }: { mqttTcp: boolean }): string {
  const marker = OPTIONAL('mqtt-tcp');
  if (!marker.test(template)) throw new Error('nginx.conf: no "# @optional mqtt-tcp: …" … "# @end mqtt-tcp" block');
  if (!mqttTcp) return template.replace(marker, '');
  const module = streamModule();
  if ('missing' in module) throw new Error(`GATEWAY_MQTT_PORT is set, but this is ${module.missing}`);
  // load_module must come before the blocks that use the module.
  return module.load ? `load_module ${module.load};\n${template}` : template;
}

/** `-e stderr` keeps nginx (>= 1.19.5) from opening its compiled-in error log before reading ours. */
export const nginxArgs = (dir: string, confFile: string) => ['-p', `${dir}/`, '-c', confFile, '-e', 'stderr', '-g', 'daemon off;'];

/** A shell command line for `argv`, arguments quoted only where needed. */
export function shellLine(argv: readonly string[]): string {
  const quote = (a: string) => (/^[\w./:=@-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return argv.map(quote).join(' ');
}

/** The shell command line that runs `nginx` on a rendered gateway. */
export const shellCommand = (nginx: string, gateway: RenderedGateway) => shellLine([nginx, ...gateway.args]);

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const config = loadConfig(gatewayEnv);
  if (process.argv.includes('--routes')) {
    writeFileSync(TEMPLATE, withRoutes(readFileSync(TEMPLATE, 'utf8'), PROCESS_LIST));
    process.stdout.write(`${TEMPLATE}: routes of ${routedProcesses(PROCESS_LIST).map((p) => p.name).join(', ')}\n`);
  } else if (process.argv.includes('--env')) {
    for (const [name, value] of Object.entries(placeholders(config))) process.stdout.write(`${name}=${value}\n`);
  } else {
    const gateway = writeGateway(config);
    process.stdout.write(`${gateway.confFile}\n${shellCommand('nginx', gateway)}\n`);
  }
}
