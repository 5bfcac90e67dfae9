// A real redis-server for tests and benchmarks, on a free loopback port, with its files in a
// directory of its own so that it can be killed (kill -9) and started again on the same data.
// Persistence is the one the README documents for the broker's Redis: AOF with `appendfsync always`
// unless asked otherwise, no RDB snapshots.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { findProgram } from '../lib/programs.js';
import { eventually, freePort, scratchDir, START_TIMEOUT_MS } from './process.js';

export interface RedisOptions {
  /** AOF on (default) or no persistence at all. */
  appendonly?: boolean;
  /** AOF fsync policy: `always` (default: nothing acknowledged is lost on a crash) or `everysec`. */
  appendfsync?: 'always' | 'everysec';
  /** Directory for the AOF files; a new temporary one by default. */
  dir?: string;
}

export interface RunningRedis {
  url: string;
  port: number;
  dir: string;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
  /** SIGKILL (kill -9) and wait for the exit. */
  kill(): Promise<void>;
  /** Starts it again on the same port and files (after stop or kill), ready when it answers PING. */
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open, nothing is answered (a Redis that hangs), until resume(). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
}

/** redis-server on 127.0.0.1, ready when it answers PING. Needs the program (requireProgram first). */
export async function startRedis({ appendonly = true, appendfsync = 'always', dir = scratchDir('redis-') }: RedisOptions = {}): Promise<RunningRedis> {
  const program = findProgram('redis-server');
  if (!program) throw new Error('redis-server is not installed (apt-get install -y redis-server)');
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', appendonly ? 'yes' : 'no', '--appendfsync', appendfsync];
  let child: ChildProcess;

  const launch = async () => {
    child = spawn(program, args, { stdio: 'ignore' });
    await eventually(
      async () => {
        const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        probe.on('error', () => {});
        try {
          await probe.connect();
          return (await probe.ping()) === 'PONG';
        } finally {
          probe.disconnect();
        }
      },
      { what: 'redis-server to answer PING', timeoutMs: START_TIMEOUT_MS },
    );
  };
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
  };
  await launch();
  // A test that dies must not leave it running.
  process.once('exit', () => child.kill('SIGKILL'));
  return {
    url,
    port,
    dir,
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
    restart: launch,
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
  };
}
