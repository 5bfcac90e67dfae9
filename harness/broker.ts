// Starts our broker (broker/main.ts) as a child process on free loopback ports and waits for its
// 'broker listening' line (so LOG_LEVEL must stay info or lower). Anonymous clients are allowed unless `env` says otherwise, and the data
// directory is a fresh temporary one unless `env.DATA_DIR` is given (pass the same one to restart).
//
//   const broker = await startBroker();
//   … mqtt.connect(broker.mqttUrl) …
//   await broker.stop();   // SIGTERM, graceful;  broker.kill() is SIGKILL (crash tests)
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { MqttClient } from 'mqtt';
import { PROCESSES } from '../lib/processes.js';
import { profileFlags, scratchDir, START_TIMEOUT_MS, testFrom } from './process.js';

export interface RunningBroker {
  mqttUrl: string;
  wsUrl: string;
  httpUrl: string;
  dataDir: string;
  /** Every log line so far (JSON strings), for assertions on what the broker said. */
  logs: string[];
  process: ChildProcess;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
  /** SIGKILL (kill -9) and wait for the exit. */
  kill(): Promise<void>;
}

const main = fileURLToPath(new URL('../broker/main.ts', import.meta.url));
/** The broker as the container image runs it: compiled by `npm run build`, started by plain node. */
export const compiledMain = fileURLToPath(new URL('../dist/broker/main.js', import.meta.url));

export interface BrokerOptions {
  env?: Record<string, string>;
  timeoutMs?: number;
  /**
   * Run dist/broker/main.js (build it first) instead of the sources through tsx: tsx's loader runs
   * in a thread of its own for the life of the process, which adds to the resident memory. Default:
   * as TEST_FROM says (testFrom()).
   */
  compiled?: boolean;
}

export async function startBroker({ env = {}, timeoutMs = START_TIMEOUT_MS, compiled = testFrom() === 'dist' }: BrokerOptions = {}): Promise<RunningBroker> {
  const dataDir = env.DATA_DIR ?? scratchDir('broker-');
  const child = spawn(process.execPath, [...profileFlags(), ...(PROCESSES.broker.nodeFlags ?? []), ...(compiled ? [compiledMain] : ['--import', 'tsx', main])], {
    env: {
      ...process.env,
      LOG_LEVEL: 'info',
      LOG_FORMAT: 'json',
      BROKER_ALLOW_ANONYMOUS: 'true',
      MQTT_PORT: '0',
      MQTT_WS_PORT: '0',
      HTTP_PORT: '0',
      ...env,
      DATA_DIR: dataDir,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  // A test process that dies (assertion, uncaught error) must not leave a broker behind.
  const orphanGuard = () => child.kill('SIGKILL');
  process.once('exit', orphanGuard);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      process.off('exit', orphanGuard);
      resolve();
    }),
  );
  const ready = new Promise<{ mqtt: string; ws: string; http: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`broker not listening after ${timeoutMs} ms:\n${logs.slice(-20).join('\n')}`)), timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      logs.push(line);
      if (line.includes('"broker listening"')) {
        clearTimeout(timer);
        resolve(JSON.parse(line));
      }
    });
    createInterface({ input: child.stderr! }).on('line', (line) => logs.push(line));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with ${code} before listening:\n${logs.slice(-20).join('\n')}`));
    });
  });
  const end = (signal: NodeJS.Signals) => async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  try {
    const line = await ready;
    return { mqttUrl: line.mqtt, wsUrl: line.ws, httpUrl: `http://127.0.0.1:${line.http}`, dataDir, logs, process: child, stop: end('SIGTERM'), kill: end('SIGKILL') };
  } catch (err) {
    await end('SIGKILL')();
    throw err;
  }
}

/** The QoS a broker granted a subscription, 128 for a refusal (which mqtt.js turns into an error). */
export async function grantedQos(client: MqttClient, filter: string): Promise<number> {
  try {
    return (await client.subscribeAsync(filter, { qos: 1 }))[0]!.qos;
  } catch (err) {
    const granted = (err as { packet?: { granted?: number[] } }).packet?.granted;
    if (granted) return granted[0]!;
    throw err;
  }
}
