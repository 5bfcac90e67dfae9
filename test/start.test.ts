// `npm start` as a new user runs it, then the README's load command against it: every port
// overridden (free loopback ports) and a data directory of its own, on our broker and on Mosquitto
// (BROKER=mosquitto). The load tool must find npm start's load-test key by itself, so that the
// gateway gives it a bucket of its own: with one IP address's bucket (burst 10) most of these
// orders would be refused.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PROCESS_LIST, startPorts } from '../lib/processes.js';
import { LOAD_TEST_KEY_FILE } from '../scripts/dev-keys.js';
import { ROOT, eventually, freePort } from '../harness/process.js';
import { requireProgram } from './support/programs.js';
import type { BrokerKind } from '../harness/stack.js';

const ORDERS = 20;
// Every port npm start opens (lib/processes.ts), so that nothing lands on a default one.
const PORT_VARIABLES = ['GATEWAY_PORT', ...startPorts(PROCESS_LIST).map((d) => d.startVariable)];

interface LoadSummary {
  apiKey: string | null;
  sent: number;
  rate: { asked: number; achieved: number | null };
  accepted: number;
  rateLimited: number;
  otherErrors: number;
  confirmed: number;
  rejected: number;
  stillPending: number;
}

for (const broker of ['aedes', 'mosquitto'] as BrokerKind[]) {
  const skip = requireProgram('nginx') || (broker === 'mosquitto' && requireProgram('mosquitto'));
  describe(`npm start${broker === 'mosquitto' ? ' with BROKER=mosquitto' : ''}, then npm run load`, { skip }, () => {
    let dataDir: string;
    let env: Record<string, string>;
    let start: ChildProcess;
    const lines: string[] = [];

    before(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'woodytoys-start-'));
      env = { DATA_DIR: dataDir, BROKER: broker, WORKERS: '2' };
      for (const name of PORT_VARIABLES) env[name] = String(await freePort());
      // Its own process group, so that the whole tree (concurrently, its shells, nginx) stops together.
      start = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], {
        cwd: ROOT,
        env: { ...process.env, LOG_FORMAT: '', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      createInterface({ input: start.stdout! }).on('line', (l) => lines.push(l));
      createInterface({ input: start.stderr! }).on('line', (l) => lines.push(l));
      // Ready once the stock service and every worker have joined their groups: an order then has
      // somewhere to go on either broker.
      await eventually(
        () => {
          if (start.exitCode !== null) throw new Error(`npm start exited with ${start.exitCode}:\n${lines.slice(-30).join('\n')}`);
          const joined = (name: string, msg: string) => lines.some((l) => l.startsWith(`[${name}]`) && l.includes(`"msg":"${msg}"`));
          return joined('stock', 'subscribed') && joined('worker-1', 'worker consuming') && joined('worker-2', 'worker consuming');
        },
        { timeoutMs: 120_000, intervalMs: 200, what: 'npm start to be ready' },
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${lines.slice(-30).join('\n')}`);
      });
    });

    after(async () => {
      if (start?.pid !== undefined && start.exitCode === null && start.signalCode === null) {
        const exited = once(start, 'exit');
        process.kill(-start.pid, 'SIGINT'); // Ctrl-C at the terminal
        const timer = setTimeout(() => process.kill(-start.pid!, 'SIGKILL'), 20_000);
        await exited;
        clearTimeout(timer);
      }
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    });

    it('prints where everything listens, the gateway first, with the load-test key it generated', () => {
      const banner = lines.slice(0, lines.findIndex((l) => l.startsWith('Press Ctrl-C')) + 1).join('\n');
      assert.match(banner, new RegExp(`gateway +http://127\\.0\\.0\\.1:${env.GATEWAY_PORT} `));
      assert.ok(existsSync(join(dataDir, LOAD_TEST_KEY_FILE)));
      assert.match(banner, new RegExp(`load-test key +${join(dataDir, LOAD_TEST_KEY_FILE)}`));
      assert.match(banner, broker === 'mosquitto' ? new RegExp(`MQTT broker +Mosquitto: mqtt://127\\.0\\.0\\.1:${env.MQTT_PORT}`) : new RegExp(`MQTT broker +mqtt://127\\.0\\.0\\.1:${env.MQTT_PORT}`));
      assert.doesNotMatch(banner, /:(3001|3002|3003|3004|3005|3006|3011|8080|8083|1883)\b/, 'no default port is used when every one is overridden');
    });

    it(`the README's load command: ${ORDERS} orders at ${ORDERS}/s through the gateway, all accepted, all settled`, async () => {
      const load = spawn(process.execPath, ['--import', 'tsx', 'scripts/load.ts', '--orders', String(ORDERS), '--rate', String(ORDERS), '--wait', '90', '--json'], {
        cwd: ROOT,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      load.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      load.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const [code] = (await once(load, 'exit')) as [number | null];
      assert.equal(code, 0, stderr);
      assert.match(stderr, /Sending npm start's load-test key/);
      const summary = JSON.parse(stdout) as LoadSummary;
      assert.equal(summary.apiKey, join(dataDir, LOAD_TEST_KEY_FILE));
      assert.deepEqual(
        { sent: summary.sent, accepted: summary.accepted, rateLimited: summary.rateLimited, otherErrors: summary.otherErrors, stillPending: summary.stillPending },
        { sent: ORDERS, accepted: ORDERS, rateLimited: 0, otherErrors: 0, stillPending: 0 },
      );
      assert.equal(summary.confirmed + summary.rejected, ORDERS);
      assert.equal(summary.rate.asked, ORDERS);
      assert.ok(summary.rate.achieved !== null && summary.rate.achieved > 0, 'the achieved rate is reported');
      // The gateway counted these orders in the key tier (its access log says which bucket).
      const access = readFileSync(join(dataDir, 'gateway', 'access.log'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { method: string; uri: string; client: string });
      const posted = access.filter((l) => l.method === 'POST' && l.uri === '/api/orders');
      assert.equal(posted.length, ORDERS);
      assert.ok(posted.every((l) => l.client === 'key'));
    });
  });
}
