// The process declaration (lib/processes.ts) against everything that repeats it: npm start's process
// list, the gateway's routes and body limits (nginx.conf; compose.yaml's upstreams), the ACL's users
// and groups, compose.yaml's services, ports and MQTT users, .env.example, package.json's scripts,
// each entry file's default ports and the README's list of MQTT users. In-process and fast: nothing is started.
// Each check returns the disagreements it finds, so that the last test can register a fourth HTTP
// service and show which files it takes: what is derived follows by itself, the rest is named.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Acl } from '../broker/acl.js';
import { aclFile } from '../broker/mosquitto/run.js';
import { SERVICE_USERS } from '../broker/dev-logins.js';
import { gatewayEnv, placeholders, substitute, TEMPLATE, upstreamEnv, withRoutes } from '../gateway/render.js';
import { parseConfig } from '../lib/config.js';
import { ERP_OPERATION_COST_RU, ERP_OPERATION_KINDS } from '../lib/erp-operations.js';
import {
  GATEWAY_MQTT_PORT,
  GATEWAY_PORT,
  MQTT_USERS,
  PROCESS_LIST,
  clientIdPatterns,
  compiledCommand,
  composeService,
  httpPort,
  mqttUsers,
  processTable,
  routedProcesses,
  sourceCommand,
  startPorts,
  upstreamVariable,
  type ProcessDeclaration,
} from '../lib/processes.js';
import { startPlan } from '../scripts/start-plan.js';
import { SHARED_GROUPS } from '../lib/topics.js';
import { ROOT } from '../harness/process.js';

const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');

interface ComposeService {
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, unknown>;
  ports?: string[];
}

/** The repository's files that must agree with a declaration. */
interface Files {
  nginxConf: string;
  compose: { services: Record<string, ComposeService> };
  acl: Acl;
  envExample: string;
  /** The gateway container's environment file (gateway/compose.env). */
  gatewayEnv: string;
  packageJson: { scripts: Record<string, string> };
  readme: string;
  entries: (p: ProcessDeclaration) => string;
}

const repository: Files = {
  nginxConf: readFileSync(TEMPLATE, 'utf8'),
  compose: parse(read('compose.yaml'), { merge: true }) as Files['compose'],
  acl: Acl.read(aclFile),
  envExample: read('.env.example'),
  gatewayEnv: read('gateway/compose.env'),
  packageJson: JSON.parse(read('package.json')) as Files['packageJson'],
  readme: read('README.md'),
  entries: (p) => (existsSync(join(ROOT, p.entry)) ? read(p.entry) : ''),
};

/** A file's disagreements with the declaration, each naming the file. */
type Check = (files: Files, processes: readonly ProcessDeclaration[]) => string[];

const sameSet = (a: Iterable<string>, b: Iterable<string>) => JSON.stringify([...new Set(a)].sort()) === JSON.stringify([...new Set(b)].sort());
const passwordVariable = (user: string) => `MQTT_PASSWORD_${user.toUpperCase()}`;

/** The routes and body limits nginx.conf really has (parsed, not rendered), and its upstreams' servers. */
function nginxRoutes(conf: string) {
  const locations = [...conf.matchAll(/location (= )?(\/api\/[a-z-]+\/?) \{\s*client_max_body_size (\S+);\s*proxy_pass http:\/\/([a-z_-]+);/g)].map((m) => ({
    match: `${m[1] ?? ''}${m[2]}`,
    bodyLimit: m[3]!,
    upstream: m[4]!,
  }));
  const upstreams = new Map([...conf.matchAll(/upstream ([a-z_-]+) \{\s*server \$\{([A-Z_]+)\};\s*keepalive (\d+);/g)].map((m) => [m[1]!, { variable: m[2]!, keepalive: Number(m[3]) }]));
  return { locations, upstreams };
}

const checks: Record<string, Check> = {
  'nginx.conf': ({ nginxConf }, processes) => {
    const problems: string[] = [];
    if (withRoutes(nginxConf, processes) !== nginxConf) problems.push('nginx.conf: its @generated parts differ from the declaration (npm run gateway:routes)');
    const { locations, upstreams } = nginxRoutes(nginxConf);
    for (const p of routedProcesses(processes)) {
      for (const match of [`= ${p.route.prefix}`, `${p.route.prefix}/`]) {
        const l = locations.find((x) => x.match === match);
        if (!l) problems.push(`nginx.conf: no location ${match}`);
        else if (l.bodyLimit !== p.route.bodyLimit || upstreams.get(l.upstream)?.variable !== upstreamVariable(p)) problems.push(`nginx.conf: location ${match} is not ${p.route.bodyLimit} to \${${upstreamVariable(p)}}`);
      }
    }
    return problems;
  },
  'broker/mosquitto/acl': ({ acl }, processes) => {
    const problems: string[] = [];
    const users = mqttUsers(processes);
    if (!sameSet(acl.users.keys(), users)) problems.push(`broker/mosquitto/acl: users ${[...acl.users.keys()].join(', ')}, declared ${users.join(', ')}`);
    for (const user of users) {
      const ids = acl.users.get(user) ?? [];
      if (!sameSet(ids, clientIdPatterns(user))) problems.push(`broker/mosquitto/acl: user ${user}'s client ids are ${ids.join(' ') || 'missing'}, not ${clientIdPatterns(user).join(' ')}`);
      const declared = processes.filter((p) => p.mqttUser === user).flatMap((p) => p.groups);
      const granted = acl.groupRules.filter((r) => r.user === user).map((r) => r.group);
      if (!sameSet(granted, declared)) problems.push(`broker/mosquitto/acl: user ${user} may join groups ${granted.join(', ') || 'none'}, declared ${declared.join(', ') || 'none'}`);
    }
    return problems;
  },
  'lib/topics.ts': (_files, processes) => {
    // The groups the broker keeps from its first start (BROKER_GROUPS' default) are the ones the processes join.
    const joined = processes.flatMap((p) => p.groups);
    const declared = Object.keys(SHARED_GROUPS);
    return sameSet(declared, joined) ? [] : [`lib/topics.ts: SHARED_GROUPS declares ${declared.join(', ')}, the processes join ${joined.join(', ') || 'none'}`];
  },
  'compose.yaml': ({ compose }, processes) => {
    const problems: string[] = [];
    const { services } = compose;
    const users = mqttUsers(processes);
    for (const p of processes) {
      const name = composeService(p);
      const service = services[name];
      if (!service) {
        problems.push(`compose.yaml: no service ${name}`);
        continue;
      }
      const env = service.environment ?? {};
      const command = compiledCommand(p);
      if (JSON.stringify(service.command) !== JSON.stringify(command)) problems.push(`compose.yaml: ${name} runs ${service.command?.join(' ')}, not ${command.join(' ')}`);
      for (const [variable, d] of Object.entries(p.ports)) {
        if (env[variable] !== String(d.port)) problems.push(`compose.yaml: ${name}'s ${variable} is ${env[variable]}, not ${d.port}`);
      }
      if (!service.healthcheck?.test.join(' ').includes(`127.0.0.1:${httpPort(p).port}/readyz`)) problems.push(`compose.yaml: ${name}'s healthcheck does not ask port ${httpPort(p).port}`);
      if (p.mqttUser && !env.MQTT_URL?.includes(`mqtt://gateway:${GATEWAY_MQTT_PORT}`)) problems.push(`compose.yaml: ${name}'s MQTT_URL is ${env.MQTT_URL}, not the gateway's mqtt://gateway:${GATEWAY_MQTT_PORT}`);
      if (env.MQTT_USERNAME !== p.mqttUser) problems.push(`compose.yaml: ${name} logs in as ${env.MQTT_USERNAME}, not ${p.mqttUser}`);
      if (p.mqttUser && !env.MQTT_PASSWORD?.startsWith(`\${${passwordVariable(p.mqttUser)}:?`)) problems.push(`compose.yaml: ${name}'s MQTT_PASSWORD is not \${${passwordVariable(p.mqttUser)}:?…}`);
      if (p.adminKey !== ('ADMIN_API_KEY' in env || undefined)) problems.push(`compose.yaml: ${name} ${p.adminKey ? 'lacks' : 'should not have'} ADMIN_API_KEY`);
      if (p.route && !(name in (services.gateway?.depends_on ?? {}))) problems.push(`compose.yaml: the gateway does not wait for ${name}`);
      const upstream = `${composeService(p)}:${httpPort(p).port}`;
      if (p.route && services.gateway?.environment?.[upstreamVariable(p)] !== upstream) problems.push(`compose.yaml: the gateway's ${upstreamVariable(p)} is not ${upstream}`);
    }
    // The broker's users, and Mosquitto's (its password file is written from the same list).
    const brokerUsers = Object.keys(services.broker?.environment ?? {}).flatMap((k) => (/^BROKER_PASSWORD_(.+)$/.exec(k)?.[1]?.toLowerCase() ?? []));
    if (!sameSet(brokerUsers, users)) problems.push(`compose.yaml: the broker's users are ${brokerUsers.join(', ')}, declared ${users.join(', ')}`);
    const mosquitto = services.mosquitto;
    const mosquittoUsers = /for u in ([a-z0-9 -]+);/.exec(mosquitto?.command?.join(' ') ?? '')?.[1]?.split(' ') ?? [];
    if (!sameSet(mosquittoUsers, users) || !sameSet(Object.keys(mosquitto?.environment ?? {}), users.map(passwordVariable))) problems.push(`compose.yaml: mosquitto's users are ${mosquittoUsers.join(', ')}, declared ${users.join(', ')}`);
    for (const port of [GATEWAY_PORT, GATEWAY_MQTT_PORT]) if (!services.gateway?.ports?.some((p) => p.endsWith(`:${port}`))) problems.push(`compose.yaml: the gateway does not publish ${port}`);
    return problems;
  },
  // The gateway's MQTT listeners in compose, and the broker nodes behind them.
  'gateway/compose.env': ({ gatewayEnv }, processes) => {
    const broker = processes.find((p) => p.name === 'broker');
    const set = Object.fromEntries(gatewayEnv.split('\n').flatMap((l) => (/^([A-Z_]+)=(.*)$/.exec(l) ? [[l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]] : [])));
    const expected: Record<string, string | undefined> = {
      GATEWAY_MQTT_PORT: String(GATEWAY_MQTT_PORT),
      MQTT_TCP_UPSTREAM: broker?.ports.MQTT_PORT && `${composeService(broker)}:${broker.ports.MQTT_PORT.port}`,
      MQTT_WS_UPSTREAM: broker?.ports.MQTT_WS_PORT && `${composeService(broker)}:${broker.ports.MQTT_WS_PORT.port}`,
    };
    return Object.entries(expected).flatMap(([k, v]) => (set[k] === v ? [] : [`gateway/compose.env: ${k} is ${set[k]}, not ${v}`]));
  },
  '.env.example': ({ envExample }, processes) => {
    const set = envExample.split('\n').flatMap((l) => (/^(MQTT_PASSWORD_[A-Z0-9_]+)=/.exec(l)?.[1] ?? []));
    const declared = mqttUsers(processes).map(passwordVariable);
    return sameSet(set, declared) ? [] : [`.env.example: sets ${set.join(', ')}, declared ${declared.join(', ')}`];
  },
  // A process's own npm script is a convenience (npm start and compose run the entry files): where
  // there is one, it runs the declared entry.
  'package.json': ({ packageJson }, processes) =>
    processes.flatMap((p) => {
      const script = packageJson.scripts[p.name];
      return script === undefined || script === sourceCommand(p) ? [] : [`package.json: script "${p.name}" is not "${sourceCommand(p)}"`];
    }),
  // The processes table is printed from the declaration (npm run -s processes), not copied into the README.
  'README.md': ({ readme }, processes) => {
    const problems: string[] = [];
    if (!readme.includes('npm run -s processes')) problems.push('README.md: does not point to `npm run -s processes` for the processes table');
    const row = (variable: string) => readme.split('\n').find((l) => l.startsWith(`| \`${variable}\` |`)) ?? '';
    for (const user of mqttUsers(processes)) if (!row('MQTT_USERNAME`, `MQTT_PASSWORD').includes(`\`${user}\``)) problems.push(`README.md: the MQTT_USERNAME row lacks \`${user}\``);
    return problems;
  },
  // Each entry file's default ports: the declaration's, or written as the declaration says.
  'entry files': ({ entries }, processes) =>
    processes.flatMap((p) =>
      Object.entries(p.ports).flatMap(([variable, d]) => {
        const text = entries(p);
        const derived = text.includes(`${variable}: port(PROCESSES.${p.name}.ports.${variable}.port)`);
        return derived || text.includes(`${variable}: port(${d.port})`) ? [] : [`${p.entry}: ${variable}'s default is not ${d.port}`];
      }),
    ),
};

/** Every disagreement, by file. */
function disagreements(files: Files, processes: readonly ProcessDeclaration[]): Record<string, string[]> {
  return Object.fromEntries(Object.entries(checks).map(([file, check]) => [file, check(files, processes)] as const).filter(([, problems]) => problems.length > 0));
}

/** npm start's plan with every port at its default, as a user who sets nothing gets it. */
function defaultPlan(processes: readonly ProcessDeclaration[], workers = 2) {
  const ports = Object.fromEntries(startPorts(processes).map((d) => [d.startVariable, d.port]));
  return startPlan(processes, {
    ports,
    shared: { DATA_DIR: '/data' },
    login: (user) => ({ MQTT_USERNAME: user, MQTT_PASSWORD: `password-of-${user}` }),
    adminKey: 'admin-key-0123456789',
    replicas: Object.fromEntries(processes.filter((p) => p.replicas).map((p) => [p.name, workers])),
  });
}

describe('the process declaration', () => {
  test('every file that repeats it agrees with it', () => {
    assert.deepEqual(disagreements(repository, PROCESS_LIST), {});
  });

  test('npm start runs each declared process on its declared ports, logged in as its user, the admin key where it has admin routes', () => {
    assert.match(read('scripts/start.ts'), /startPlan\(PROCESS_LIST,/, 'scripts/start.ts runs the plan of the declaration');
    const plan = defaultPlan(PROCESS_LIST, 3);
    assert.deepEqual(plan.map((p) => p.name), ['broker', 'erp', 'catalog', 'stock', 'orders', 'deadletters', 'worker-1', 'worker-2', 'worker-3']);
    for (const { declaration: p, entry, env, name } of plan) {
      assert.equal(entry, p.entry);
      if (!p.replicas) for (const [variable, d] of Object.entries(p.ports)) assert.equal(env[variable], String(d.port), `${name} ${variable}`);
      assert.equal(env.MQTT_USERNAME, p.mqttUser, name);
      assert.equal('ADMIN_API_KEY' in env, p.adminKey === true, name);
    }
    // Replicas: the first on the process's port, the others from the next one on.
    assert.deepEqual(plan.filter((p) => p.name.startsWith('worker-')).map((p) => p.env.HTTP_PORT), ['3005', '3011', '3012']);
  });

  test('the development logins are the declaration\u2019s MQTT users, the viewer included', () => {
    assert.deepEqual([...SERVICE_USERS], [...MQTT_USERS]);
    assert.deepEqual(new Set(MQTT_USERS), new Set(['erp', 'catalog', 'stock', 'orders', 'deadletters', 'worker', 'viewer']));
  });

  test('the gateway renderer gives each routed process an upstream variable, by default its declared port', () => {
    const config = parseConfig(gatewayEnv, {});
    const values = placeholders(config);
    for (const p of routedProcesses(PROCESS_LIST)) assert.equal(values[upstreamVariable(p)], `127.0.0.1:${httpPort(p).port}`);
    assert.equal(config.GATEWAY_PORT, GATEWAY_PORT);
  });

  test('the ERP\u2019s operation kinds and costs are one definition, the defaults of both sides', () => {
    assert.deepEqual(ERP_OPERATION_KINDS, Object.keys(ERP_OPERATION_COST_RU));
    for (const [file, variables] of [
      ['workers/main.ts', ['WORKER_ORDER_COST_RU', 'WORKER_MOVEMENT_COST_RU']],
      ['sandbox/erp/main.ts', ['ERP_ORDER_COST_RU', 'ERP_MOVEMENT_COST_RU']],
    ] as const) {
      const text = read(file);
      for (const [i, variable] of variables.entries()) assert.ok(text.includes(`${variable}: positiveInt(ERP_OPERATION_COST_RU${i === 0 ? '.order' : "['stock-movement']"})`), `${file}: ${variable}`);
    }
  });

  test('a fourth HTTP service: registered once, npm start and the gateway take it; the checks name the few files still to write', () => {
    const reviews: ProcessDeclaration = {
      name: 'reviews',
      entry: 'api/reviews/main.ts',
      ports: { HTTP_PORT: { port: 3008, startVariable: 'REVIEWS_PORT' } },
      groups: [],
      route: { prefix: '/api/reviews', bodyLimit: '32k', keepalive: 16 },
      adminKey: true,
    };
    const processes = [...PROCESS_LIST, reviews];

    // Derived: npm start's list (and the test stack, which runs the same plan) and the gateway.
    const planned = defaultPlan(processes).find((p) => p.name === 'reviews');
    assert.deepEqual(planned && { entry: planned.entry, port: planned.env.HTTP_PORT, admin: 'ADMIN_API_KEY' in planned.env }, { entry: 'api/reviews/main.ts', port: '3008', admin: true });
    const conf = withRoutes(repository.nginxConf, processes);
    const { locations, upstreams } = nginxRoutes(conf);
    assert.deepEqual(upstreams.get('reviews'), { variable: 'REVIEWS_UPSTREAM', keepalive: 16 });
    assert.deepEqual(locations.filter((l) => l.upstream === 'reviews').map((l) => `${l.match} ${l.bodyLimit}`), ['= /api/reviews 32k', '/api/reviews/ 32k']);
    assert.equal(parseConfig(upstreamEnv(processes), {}).REVIEWS_UPSTREAM, '127.0.0.1:3008');
    // The rendered file has a value for every placeholder, the new upstream included.
    const values = { ...placeholders(parseConfig(gatewayEnv, {})), REVIEWS_UPSTREAM: '127.0.0.1:3008' };
    assert.match(substitute(conf, values), /server 127\.0\.0\.1:3008;/);

    // Checked: beside the declaration and the service's own files (main.ts, app.ts), these, and
    // nothing else: five files in all, nginx.conf regenerated by `npm run gateway:routes`. (A
    // service with an MQTT user adds its ACL section and its password in .env.example.)
    assert.deepEqual(Object.keys(disagreements(repository, processes)).sort(), ['compose.yaml', 'entry files', 'nginx.conf']);
    const withGenerated: Files = {
      ...repository,
      nginxConf: conf,
      entries: (p) => (p === reviews ? 'HTTP_PORT: port(PROCESSES.reviews.ports.HTTP_PORT.port),' : repository.entries(p)),
    };
    assert.deepEqual(Object.keys(disagreements(withGenerated, processes)), ['compose.yaml']);
    assert.match(processTable(processes), /\| `npm run reviews` \| 3008 \(`REVIEWS_PORT`\) \|/, 'npm run -s processes prints it');
  });
});
