// compose.yaml without a Docker engine: it is valid for docker-compose and for the compose-spec
// JSON schema, nginx accepts the gateway configuration as the nginx image renders it, and every
// container's own command line, run here with the environment compose gives it (Redis with its
// append-only file, the lease store; every process's MQTT through the gateway's stream listener),
// passes its healthcheck and confirms an order end to end.
//
// What differs from a real `docker compose up`, and why: service names resolve only inside
// Docker's network, so each container port becomes a free loopback port and every `service:port`
// in the environment is rewritten to 127.0.0.1:<that port>; volumes become temporary directories;
// HTTP_HOST is 127.0.0.1 so nothing listens beyond loopback. The image's own ENV (Dockerfile) comes
// first, as in a container: NODE_ENV=production there, so .env.example's placeholder secrets are
// refused, and the run uses an env file with generated ones instead.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2019 } from 'ajv/dist/2019.js';
import mqtt from 'mqtt';
import { closeMqtt } from '../lib/mqtt.js';
import { parse } from 'yaml';
import { localTemplate, nginxArgs, substitute, TEMPLATE } from '../gateway/render.js';
import { accessLog, mqttSessions } from '../harness/gateway.js';
import { ROOT, START_TIMEOUT_MS, eventually, freePort, startProcess, testFrom, type Proc } from '../harness/process.js';
import { findProgram, requireNginxStream, requireProgram } from './support/programs.js';
import { connectClient } from '../harness/mqtt.js';

const COMPOSE_SCHEMA = '/usr/lib/python3/dist-packages/compose/config/compose_spec.json';
const skip = requireProgram('docker-compose') || requireProgram('nginx') || requireNginxStream() || requireProgram('redis-server', 'redis-server');

interface Service {
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  deploy?: { replicas?: number };
  image?: string;
  ports?: unknown[];
}

const EXAMPLE_ENV = join(ROOT, '.env.example');
const compose = (...args: string[]) => composeWith(EXAMPLE_ENV, ...args);
const composeWith = (envFile: string, ...args: string[]) =>
  execFileSync(findProgram('docker-compose')!, ['-f', 'compose.yaml', '--env-file', envFile, ...args], { cwd: ROOT, encoding: 'utf8' });

/** The runtime stage's ENV of the Dockerfile (the last stage): what every container starts with. */
function imageEnv(): Record<string, string> {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lastStage = text.slice(text.lastIndexOf('\nFROM '));
  const env: Record<string, string> = {};
  for (const [, assignments] of lastStage.matchAll(/^ENV\s+(.+)$/gm)) {
    for (const [, name, value] of assignments!.matchAll(/([A-Z_][A-Z0-9_]*)=(\S+)/g)) env[name!] = value!;
  }
  return env;
}

/** .env.example with every placeholder replaced by a generated secret: what a user's .env holds. */
function generatedEnvFile(dir: string): string {
  const file = join(dir, '.env');
  const text = readFileSync(EXAMPLE_ENV, 'utf8').replace(/^([A-Z_]+)=change-me.*$/gm, (_line, name: string) => `${name}=${randomBytes(16).toString('hex')}`);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

describe('compose.yaml', { skip }, () => {
  it('is valid for docker-compose, with and without the mosquitto and tracing profiles', () => {
    compose('config', '-q');
    compose('--profile', 'mosquitto', 'config', '-q');
    const tracing = parse(compose('--profile', 'tracing', 'config')) as { services: Record<string, Service> };
    assert.ok(tracing.services.jaeger, 'the tracing profile adds a trace backend');
    assert.equal(tracing.services.orders!.environment!.OTEL_EXPORTER_OTLP_ENDPOINT, '', 'tracing is off unless the endpoint is given');
  });

  it('validates against the compose-spec JSON schema', (t) => {
    if (!existsSync(COMPOSE_SCHEMA)) {
      if (process.env.CI === 'true') assert.fail(`${COMPOSE_SCHEMA} is missing (apt-get install -y docker-compose)`);
      return t.skip(`no compose-spec schema at ${COMPOSE_SCHEMA} (apt-get install -y docker-compose)`);
    }
    // The schema's own formats are docker-compose's to check (it does, in `config` above): named here
    // so that Ajv neither guesses at them nor prints a warning for each.
    const composeFormats = Object.fromEntries(['duration', 'expose', 'ports', 'subnet_ip_address'].map((f) => [f, true as const]));
    const ajv = new Ajv2019({ strict: false, allErrors: true, formats: composeFormats });
    // The file names its draft with a trailing '#' and labels its parts with draft-04's `id`, which
    // Ajv does not take (the labels are not referenced); the rules themselves are 2019-09.
    const { $schema: _draft, ...schema } = JSON.parse(readFileSync(COMPOSE_SCHEMA, 'utf8'), (key, value: unknown) =>
      key === 'id' && typeof value === 'string' ? undefined : value,
    ) as Record<string, unknown>;
    const validate = ajv.compile(schema);
    const document = parse(readFileSync(join(ROOT, 'compose.yaml'), 'utf8'), { merge: true }) as unknown;
    assert.ok(validate(document), JSON.stringify(validate.errors, null, 2));
  });

  it("the gateway's image carries nginx.conf and the dashboard with every module it loads, nothing from the host", () => {
    // The gateway service builds the Dockerfile's `gateway` stage; the last stage stays every Node process's runtime.
    const gateway = (parse(compose('config')) as { services: Record<string, Service & { build?: { target?: string }; volumes?: unknown[] }> }).services.gateway!;
    assert.equal(gateway.build?.target, 'gateway');
    assert.deepEqual(gateway.volumes ?? [], [], 'no file of the host mounted: a fresh clone has no dashboard/vendor/ until npm ci');
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const stages = dockerfile.split(/^(?=FROM )/m).slice(1);
    const stage = (name: string) => stages.find((s) => new RegExp(`^FROM \\S+ AS ${name}$`, 'm').test(s))!;
    assert.match(stages.at(-1)!, /^FROM node:/);
    assert.match(stage('gateway'), /^COPY nginx\.conf \/etc\/nginx\/templates\/nginx\.conf\.template$/m);
    assert.match(stage('gateway'), /^COPY --from=build \/app\/dashboard \/usr\/share\/nginx\/html$/m);
    const build = stage('build');
    assert.ok(build.indexOf('RUN npm ci') >= 0 && build.indexOf('RUN npm ci') < build.indexOf('COPY dashboard dashboard'), 'npm ci (its prepare step vendors the modules) before the dashboard is copied');
    assert.match(readFileSync(join(ROOT, '.dockerignore'), 'utf8'), /^dashboard\/vendor$/m, "the host's vendored copies stay out of the context");

    // What the image's /app/dashboard holds: the repository's dashboard without vendor/, and what
    // npm ci's prepare step writes, run here in an empty directory as the build stage runs it.
    const dir = mkdtempSync(join(tmpdir(), 'gateway-image-'));
    try {
      symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
      const prepare = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.prepare!;
      execFileSync('sh', ['-c', prepare], { cwd: dir, stdio: 'ignore' });
      cpSync(join(ROOT, 'dashboard'), join(dir, 'dashboard'), { recursive: true, filter: (src) => !src.startsWith(join(ROOT, 'dashboard', 'vendor')) });
      const html = readFileSync(join(dir, 'dashboard', 'index.html'), 'utf8');
      const refs = [...html.matchAll(/(?:src|href)="([^":]+)"/g)].map((m) => m[1]!);
      for (const js of refs.filter((r) => r.endsWith('.js'))) {
        refs.push(...[...readFileSync(join(dir, 'dashboard', js), 'utf8').matchAll(/^import .* from '\.\/([^']+)';$/gm)].map((m) => m[1]!));
      }
      assert.ok(refs.some((r) => r.startsWith('vendor/')), `the dashboard loads vendored modules (${refs.join(', ')})`);
      for (const ref of refs) assert.ok(existsSync(join(dir, 'dashboard', ref)), `${ref} is in the image`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps secrets out of the file and stateful services on named volumes', () => {
    const text = readFileSync(join(ROOT, 'compose.yaml'), 'utf8');
    assert.doesNotMatch(text, /change-me/, 'example secrets belong in .env.example only');
    const services = (parse(text, { merge: true }) as { services: Record<string, Service & { volumes?: string[] }> }).services;
    for (const name of ['broker', 'erp', 'catalog', 'orders', 'stock', 'deadletters', 'redis']) {
      assert.ok(services[name]!.volumes?.some((v) => /^[a-z-]+:\/data$/.test(v)), `${name} keeps /data on a named volume`);
    }
    for (const [name, service] of Object.entries(services)) assert.ok(service.healthcheck, `${name} has a healthcheck`);
  });

  it('the mosquitto profile: its own command writes the users and starts Mosquitto, which passes its healthcheck', async (t) => {
    const missing = requireProgram('mosquitto') || requireProgram('mosquitto_passwd', 'mosquitto');
    if (missing) return t.skip(missing);
    const mosquitto = (parse(compose('--profile', 'mosquitto', 'config')) as { services: Record<string, Service> }).services.mosquitto!;
    const dir = mkdtempSync(join(tmpdir(), 'compose-mosquitto-'));
    const [tcp, ws] = [await freePort(), await freePort()];
    // The container's paths become this directory; its listeners, loopback ports. docker-compose v1
    // prints `$$` as written: the container's shell sees `$`.
    const local = (text: string) => text.replaceAll('$$', '$').replaceAll('/mosquitto/', `${dir}/`);
    mkdirSync(join(dir, 'config'), { recursive: true });
    mkdirSync(join(dir, 'data'), { recursive: true });
    const conf = readFileSync(join(ROOT, 'broker/mosquitto/compose.conf'), 'utf8')
      .replace(/^listener 1883$/m, `listener ${tcp} 127.0.0.1`)
      .replace(/^listener 8083$/m, `listener ${ws} 127.0.0.1`)
      .replaceAll('/mosquitto/', `${dir}/`);
    writeFileSync(join(dir, 'config', 'mosquitto.conf'), conf);
    writeFileSync(join(dir, 'config', 'acl'), readFileSync(join(ROOT, 'broker/mosquitto/acl')));
    // Started as root, Mosquitto switches to its own user before it reads the password file, as in
    // the container; the image's entrypoint hands it /mosquitto first, and so does this.
    if (process.getuid?.() === 0) assert.equal(spawnSync('chown', ['-R', 'mosquitto:mosquitto', dir]).status, 0, 'chown to the mosquitto user');
    const env = { ...process.env, ...mosquitto.environment, PATH: `${process.env.PATH}:/usr/sbin:/sbin` };
    const [shell, ...args] = mosquitto.command!.map(local);
    const child = spawn(shell!, args, { env, stdio: 'ignore' });
    try {
      const [kind, script] = mosquitto.healthcheck!.test;
      assert.equal(kind, 'CMD-SHELL');
      const check = local(script!).replace('-p 1883', `-p ${tcp}`);
      await eventually(() => spawnSync('sh', ['-c', check], { env, stdio: 'ignore', timeout: 5000 }).status === 0 || undefined, {
        timeoutMs: 20_000,
        what: "mosquitto's healthcheck",
      });
      // A wrong password is refused: the users really came from the environment.
      const wrong = check.replace('"$MQTT_PASSWORD_VIEWER"', 'not-the-password');
      assert.notEqual(spawnSync('sh', ['-c', wrong], { env, stdio: 'ignore', timeout: 5000 }).status, 0);
    } finally {
      child.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('every container command, run outside Docker', () => {
    const procs: Proc[] = [];
    let redis: ChildProcess | undefined;
    let nginx: ChildProcess | undefined;
    let dir: string;
    let services: Record<string, Service>;
    const ports = new Map<string, number>(); // "service:containerPort" → loopback port
    let gatewayUrl = '';

    /** Rewrites every service:port the environment mentions, and the container's own ports. */
    const rewrite = (value: string, map: Map<string, number> = ports) => value.replace(/\b([a-z][a-z0-9-]*):(\d{2,5})\b/g, (whole, host: string, port: string) => {
      const mapped = map.get(`${host}:${port}`);
      return mapped ? `127.0.0.1:${mapped}` : whole;
    });

    /** Redis with the container's own command, on a loopback port, its files in `redisDir`; ready when it answers PING. */
    async function runRedis(service: Service, port: number, redisDir: string) {
      const [program, ...args] = service.command!;
      assert.equal(program, 'redis-server');
      mkdirSync(redisDir, { recursive: true });
      const child = spawn(findProgram('redis-server')!, [...args, '--port', String(port), '--bind', '127.0.0.1', '--dir', redisDir], { stdio: 'ignore' });
      const cli = (...a: string[]) => spawnSync(findProgram('redis-cli') ?? 'redis-cli', ['-p', String(port), ...a], { encoding: 'utf8' }).stdout?.trim();
      await eventually(() => cli('ping') === 'PONG' || undefined, { what: "redis's healthcheck (redis-cli ping)" });
      return { child, cli };
    }

    /** nginx.conf as the gateway container renders it (its MQTT-over-TCP block included), with these values on top; nginx -t must accept it. */
    function renderGateway(environment: Record<string, string>, map: Map<string, number>, local: Record<string, string>): string[] {
      const values: Record<string, string> = {};
      for (const [k, v] of Object.entries(environment)) values[k] = rewrite(String(v), map);
      Object.assign(values, local);
      mkdirSync(values.GATEWAY_RUNTIME_DIR!, { recursive: true });
      const conf = join(values.GATEWAY_RUNTIME_DIR!, 'nginx.conf');
      writeFileSync(conf, substitute(localTemplate(readFileSync(TEMPLATE, 'utf8'), { mqttTcp: true }), values));
      const args = nginxArgs(values.GATEWAY_RUNTIME_DIR!, conf);
      const check = spawnSync(findProgram('nginx')!, [...args.filter((a, i, all) => a !== '-g' && all[i - 1] !== '-g'), '-t'], { encoding: 'utf8' });
      assert.equal(check.status, 0, `nginx -t on the compose rendering:\n${check.stderr}`);
      return args;
    }

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'compose-'));
      chmodSync(dir, 0o755);
      services = (parse(composeWith(generatedEnvFile(dir), 'config')) as { services: Record<string, Service> }).services;
      for (const key of ['broker:1883', 'broker:8083', 'broker:3006', 'erp:3004', 'catalog:3001', 'orders:3002', 'stock:3003', 'deadletters:3007', 'workers:3005', 'redis:6379', 'gateway:8080', 'gateway:1883']) {
        ports.set(key, await freePort());
      }
      // The image's build step (Dockerfile): compile to dist/ with the files beside it. Under
      // TEST_FROM=dist the runner built it just before any test started (scripts/test.ts), and the
      // other test files are running processes from it: a build here could hand them half-written files.
      if (testFrom() !== 'dist') execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: 'ignore' });
    });

    after(async () => {
      await Promise.all(procs.map((p) => p.stop()));
      nginx?.kill('SIGTERM');
      redis?.kill('SIGTERM');
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('the image runs in production: placeholder secrets from .env.example stop each process, naming the variable', async () => {
      assert.equal(imageEnv().NODE_ENV, 'production');
      const placeholders = (parse(compose('config')) as { services: Record<string, Service> }).services;
      const expected: Record<string, RegExp> = {
        broker: /BROKER_PASSWORD_ORDERS: still a placeholder/,
        erp: /MQTT_PASSWORD: still a placeholder/,
        catalog: /ADMIN_API_KEY: still a placeholder[\s\S]*MQTT_PASSWORD: still a placeholder/,
        orders: /ADMIN_API_KEY: still a placeholder[\s\S]*MQTT_PASSWORD: still a placeholder/,
        stock: /ADMIN_API_KEY: still a placeholder[\s\S]*MQTT_PASSWORD: still a placeholder/,
        deadletters: /ADMIN_API_KEY: still a placeholder[\s\S]*MQTT_PASSWORD: still a placeholder/,
        workers: /MQTT_PASSWORD: still a placeholder/,
      };
      for (const [name, problem] of Object.entries(expected)) {
        const service = placeholders[name]!;
        const [program, ...args] = service.command!;
        const env = { ...process.env, ...imageEnv(), ...service.environment, HTTP_HOST: '127.0.0.1', DATA_DIR: join(dir, `refused-${name}`) };
        const run = spawnSync(program === 'node' ? process.execPath : program!, args, { cwd: ROOT, env, encoding: 'utf8', timeout: 30_000 });
        assert.equal(run.status, 78, `${name}: ${run.stderr}`);
        assert.match(run.stderr, problem, name);
        assert.doesNotMatch(run.stderr, /change-me/, `${name} does not print the value`);
      }
    });

    it('starts each service, passes every healthcheck and confirms an order', async () => {
      // Its files in the container's working directory (/data, the redis-data volume): here, a temporary one.
      const started = await runRedis(services.redis!, ports.get('redis:6379')!, join(dir, 'redis'));
      redis = started.child;
      // The persistence the broker's acknowledgements rely on (README, "Durability"), as Redis took it.
      assert.equal(started.cli('config', 'get', 'appendonly'), 'appendonly\nyes');
      assert.equal(started.cli('config', 'get', 'appendfsync'), 'appendfsync\nalways');

      const own: Record<string, Record<string, string>> = {
        broker: { MQTT_PORT: 'broker:1883', MQTT_WS_PORT: 'broker:8083', HTTP_PORT: 'broker:3006' },
        erp: { HTTP_PORT: 'erp:3004' },
        catalog: { HTTP_PORT: 'catalog:3001' },
        orders: { HTTP_PORT: 'orders:3002' },
        stock: { HTTP_PORT: 'stock:3003' },
        deadletters: { HTTP_PORT: 'deadletters:3007' },
        workers: { HTTP_PORT: 'workers:3005' },
      };
      /** Runs a service's container command with its compose environment (addresses rewritten), until its healthcheck passes. */
      const startService = async (name: string) => {
        const service = services[name]!;
        assert.deepEqual(service.command?.slice(0, 1), ['node'], `${name} runs node in exec form`);
        const env: Record<string, string> = { ...imageEnv() };
        for (const [k, v] of Object.entries(service.environment ?? {})) env[k] = rewrite(String(v));
        for (const [k, key] of Object.entries(own[name]!)) env[k] = String(ports.get(key));
        env.HTTP_HOST = '127.0.0.1';
        env.DATA_DIR = join(dir, name);
        mkdirSync(env.DATA_DIR, { recursive: true });
        procs.push(
          await startProcess({
            name,
            command: service.command!,
            env,
            ready: (l) => typeof l.msg === 'string' && (name === 'workers' ? l.msg === 'worker consuming' : l.msg.endsWith('listening')),
          }),
        );
        await healthy(name, service);
      };
      // Dependency order, as depends_on says: the gateway (below) before the workers, whose MQTT goes through it.
      for (const name of ['broker', 'erp', 'catalog', 'stock', 'orders', 'deadletters']) await startService(name);
      assert.equal(services.workers!.environment!.LEASE_STORE, 'redis', 'the workers lease from Redis in compose');
      for (const name of ['erp', 'catalog', 'stock', 'orders', 'deadletters', 'workers']) {
        assert.equal(services[name]!.environment!.MQTT_URL, 'mqtt://gateway:1883', `${name} reaches the broker nodes through the gateway`);
      }

      // The gateway: the template rendered with the container's environment (what envsubst does),
      // its MQTT-over-TCP block included (the image has the stream module built in; here it may have
      // to be loaded). Its HTTP port is taken now, not with the others: on a loaded machine the
      // services above take a minute or more to start, long enough for a test running beside this
      // one to be given the same port. (Its MQTT port cannot wait: the services use it already.)
      ports.set('gateway:8080', await freePort());
      const gateway = services.gateway!;
      assert.equal(gateway.environment!.GATEWAY_MQTT_PORT, '1883');
      const args = renderGateway(gateway.environment ?? {}, ports, {
        GATEWAY_HOST: '127.0.0.1',
        GATEWAY_PORT: String(ports.get('gateway:8080')),
        GATEWAY_MQTT_PORT: String(ports.get('gateway:1883')),
        GATEWAY_RUNTIME_DIR: join(dir, 'nginx'),
        GATEWAY_DASHBOARD_DIR: join(ROOT, 'dashboard'),
        GATEWAY_ACCESS_LOG: join(dir, 'nginx', 'access.log'),
      });
      // nginx logs its errors to stderr (nginx.conf): kept, to say why if the healthcheck never passes.
      nginx = spawn(findProgram('nginx')!, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let nginxErrors = '';
      nginx.stderr!.on('data', (d: Buffer) => (nginxErrors = (nginxErrors + d.toString()).slice(-4000)));
      gatewayUrl = `http://127.0.0.1:${ports.get('gateway:8080')}`;
      await healthy('gateway', gateway, gatewayUrl).catch((err: Error) => {
        throw new Error(`${err.message}; nginx ${nginx?.exitCode === null ? 'running' : `exited with ${nginx?.exitCode}`}, its errors:\n${nginxErrors}`);
      });

      // The first order comes as soon as the gateway answers, on a broker that has never seen a
      // consumer: the workers have not started, and the services started before the gateway reach
      // the broker through it only on their next reconnect. It waits for them all: the broker keeps
      // the consumers' groups from its first start (BROKER_GROUPS), and the orders service sends
      // nothing before its own session has subscribed once (README, "First start").
      const res = await fetch(`${gatewayUrl}/api/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ customer: { name: 'Compose', email: 'compose@example.com' }, items: [{ productId: 'wooden-train', quantity: 1 }] }),
      });
      assert.equal(res.status, 202);

      // The workers' readiness needs their subscriptions: MQTT through the gateway's stream block works.
      await startService('workers');
      const location = res.headers.get('location')!;
      // Polled through the gateway, below its read limit (GATEWAY_READ_RATE_PER_MIN, 300 a minute):
      // a 429 there is the gateway doing its job, not the order's status.
      const order = await eventually(async () => {
        const res = await fetch(`${gatewayUrl}${location}`);
        if (res.status === 429) return void (await res.arrayBuffer());
        const o = (await res.json()) as { status: string };
        return o.status !== 'pending' && o;
      }, { what: 'the order to be confirmed', intervalMs: 250 });
      assert.equal(order.status, 'confirmed');
      const config = (await (await fetch(`${gatewayUrl}/config.json`)).json()) as { username: string; password: string };
      assert.equal(config.username, 'viewer');
      assert.equal(config.password, services.gateway!.environment!.DASHBOARD_MQTT_PASSWORD);
    });

    it('BROKER_STORE=redis with two broker replicas: the gateway spreads clients over them (TCP and WebSocket), a message crosses nodes, a killed node is skipped', async () => {
      // `BROKER_STORE=redis docker compose up --scale broker=2`: the setting from .env, as a user sets it.
      const clusterDir = join(dir, 'cluster');
      mkdirSync(clusterDir);
      const envFile = generatedEnvFile(clusterDir);
      writeFileSync(envFile, `${readFileSync(envFile, 'utf8')}\nBROKER_STORE=redis\n`);
      const cluster = (parse(composeWith(envFile, 'config')) as { services: Record<string, Service> }).services;
      const broker = cluster.broker!;
      assert.equal(broker.environment!.BROKER_STORE, 'redis');

      const map = new Map<string, number>([['redis:6379', await freePort()]]);
      const nodes: { proc: Proc; mqtt: number; ws: number }[] = [];
      const clients: mqtt.MqttClient[] = [];
      let redisNode: ChildProcess | undefined;
      let gatewayNode: ChildProcess | undefined;
      try {
        redisNode = (await runRedis(cluster.redis!, map.get('redis:6379')!, join(clusterDir, 'redis'))).child;
        // Two replicas of the broker service: the same command and environment, each container with
        // its own ports (here) and its own hostname, hence its own node id (BROKER_NODE_ID defaults
        // to the hostname; processes on one host share one, so here each gets what its container's
        // hostname would give). They share one data directory, as the replicas share compose's volume.
        for (const i of [1, 2]) {
          const [mqttPort, ws, http] = [await freePort(), await freePort(), await freePort()];
          const env: Record<string, string> = { ...imageEnv() };
          for (const [k, v] of Object.entries(broker.environment ?? {})) env[k] = rewrite(String(v), map);
          Object.assign(env, { MQTT_PORT: String(mqttPort), MQTT_WS_PORT: String(ws), HTTP_PORT: String(http), HTTP_HOST: '127.0.0.1', DATA_DIR: join(clusterDir, 'broker-data'), BROKER_NODE_ID: `container-${i}` });
          mkdirSync(env.DATA_DIR!, { recursive: true });
          const proc = await startProcess({ name: `broker-${i}`, command: broker.command!, env, ready: (l) => l.msg === 'broker listening' });
          nodes.push({ proc, mqtt: mqttPort, ws });
        }

        // The gateway as compose renders it. In compose `broker:1883` resolves to every replica's
        // address; here the one server line becomes one per node, which is what nginx makes of it.
        for (const key of ['broker:1883', 'broker:8083']) map.set(key, key.endsWith('1883') ? nodes[0]!.mqtt : nodes[0]!.ws);
        for (const value of Object.values(cluster.gateway!.environment ?? {})) {
          for (const [, host, port] of String(value).matchAll(/\b([a-z][a-z0-9-]*):(\d{2,5})\b/g)) if (!map.has(`${host}:${port}`)) map.set(`${host}:${port}`, await freePort());
        }
        const runtime = join(clusterDir, 'nginx');
        const gatewayPorts = { http: await freePort(), mqtt: await freePort() };
        const args = renderGateway(cluster.gateway!.environment ?? {}, map, {
          GATEWAY_HOST: '127.0.0.1',
          GATEWAY_PORT: String(gatewayPorts.http),
          GATEWAY_MQTT_PORT: String(gatewayPorts.mqtt),
          GATEWAY_RUNTIME_DIR: runtime,
          GATEWAY_DASHBOARD_DIR: join(ROOT, 'dashboard'),
          GATEWAY_ACCESS_LOG: join(runtime, 'access.log'),
        });
        const conf = args[args.indexOf('-c') + 1]!;
        let text = readFileSync(conf, 'utf8');
        for (const key of ['mqtt', 'ws'] as const) {
          const one = `server 127.0.0.1:${nodes[0]![key]};`;
          assert.ok(text.includes(one), `the ${key} upstream names the broker`);
          text = text.replace(one, nodes.map((n) => `server 127.0.0.1:${n[key]};`).join(' '));
        }
        writeFileSync(conf, text);
        gatewayNode = spawn(findProgram('nginx')!, args, { stdio: 'ignore' });
        await eventually(async () => (await fetch(`http://127.0.0.1:${gatewayPorts.http}/healthz`).catch(() => undefined))?.ok || undefined, { what: 'the gateway' });

        const gatewayMqtt = `mqtt://127.0.0.1:${gatewayPorts.mqtt}`;
        const connect = async (user: string, clientId: string) => {
          const c = await connectClient(gatewayMqtt, { protocolVersion: 4, clientId, reconnectPeriod: 0, connectTimeout: 10_000, username: user, password: broker.environment![`BROKER_PASSWORD_${user.toUpperCase()}`] });
          clients.push(c);
          return c;
        };
        // A display on one node, the catalog service on the other (least_conn: the node with fewer).
        const topic = 'woodytoys/public/catalog/products/compose-cluster';
        const viewer = await connect('viewer', 'viewer-compose-cluster');
        await viewer.subscribeAsync(topic, { qos: 1 });
        const catalog = await connect('catalog', 'catalog-compose-cluster');
        let received: string | undefined;
        viewer.on('message', (_t, payload) => (received = payload.toString()));
        await catalog.publishAsync(topic, 'from the other node', { qos: 1 });
        assert.equal(await eventually(() => received, { what: 'the message published on the other node' }), 'from the other node');
        await Promise.all(clients.splice(0).map((c) => closeMqtt(c, 2000)));
        const sessions = () => mqttSessions(join(runtime, 'access.log'));
        const used = await eventually(() => sessions().length >= 2 && new Set(sessions().map((x) => x.upstream)), { what: 'both MQTT sessions in the access log' });
        assert.deepEqual([...used].sort(), nodes.map((n) => `127.0.0.1:${n.mqtt}`).sort(), 'one client on each node');

        // The dashboard's way in, MQTT over WebSocket at /mqtt: spread over the nodes the same way.
        const gatewayWs = `ws://127.0.0.1:${gatewayPorts.http}/mqtt`;
        for (const i of [1, 2]) {
          const c = await connectClient(gatewayWs, { protocolVersion: 4, clientId: `viewer-compose-ws-${i}`, reconnectPeriod: 0, connectTimeout: 10_000, username: 'viewer', password: broker.environment!.BROKER_PASSWORD_VIEWER });
          clients.push(c);
        }
        await Promise.all(clients.splice(0).map((c) => closeMqtt(c, 2000)));
        const websockets = await eventually(() => {
          const lines = accessLog(join(runtime, 'access.log')).filter((l) => l.uri === '/mqtt');
          return lines.length >= 2 && new Set(lines.map((l) => String(l.upstream)));
        }, { what: 'both WebSocket sessions in the access log' });
        assert.deepEqual([...websockets].sort(), nodes.map((n) => `127.0.0.1:${n.ws}`).sort(), 'one WebSocket on each node');

        // kill -9 of the first node: new connections through the gateway land on the second.
        await nodes[0]!.proc.kill();
        for (const i of [1, 2, 3]) await connect('viewer', `viewer-compose-after-${i}`);
        await Promise.all(clients.splice(0).map((c) => closeMqtt(c, 2000)));
        const after = await eventually(() => sessions().length >= 5 && sessions().slice(2), { what: 'the later sessions in the access log' });
        for (const s of after) assert.match(s.upstream, new RegExp(`127\\.0\\.0\\.1:${nodes[1]!.mqtt}$`), `went to the live node: ${s.upstream}`);
      } finally {
        for (const c of clients) c.end(true);
        gatewayNode?.kill('SIGTERM');
        await Promise.all(nodes.map((n) => n.proc.stop()));
        redisNode?.kill('SIGTERM');
      }
    });

    /** Runs the service's own healthcheck command (ports rewritten) until it passes, as compose would. */
    async function healthy(name: string, service: Service, url?: string) {
      const [kind, ...test] = service.healthcheck!.test;
      assert.ok(kind === 'CMD' || kind === 'CMD-SHELL', `${name}: healthcheck form ${kind}`);
      const argv = test.map((a) => a.replace(/127\.0\.0\.1:(\d+)/g, (_w, p: string) => (url && name === 'gateway' ? url.slice(7) : `127.0.0.1:${ports.get(`${name}:${p}`) ?? p}`)));
      await eventually(() => {
        const [program, ...rest] = argv;
        const bin = program === 'node' ? process.execPath : findProgram(program!);
        if (!bin) throw new Error(`${program} is not installed here`);
        return spawnSync(bin, rest, { stdio: 'ignore', timeout: 5000 }).status === 0 || undefined;
      }, { timeoutMs: START_TIMEOUT_MS, what: `${name}'s healthcheck` });
    }
  });
});
