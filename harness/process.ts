// Starts the project's real processes for multi-process tests: each runs on loopback ports the test
// chose, compiled or from source (testFrom()), and is ready once it logs its "… listening" line.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The lowest port freePort() hands out. */
const PORTS_FROM = 10_000;

// A test process that dies (failed assertion, uncaught error) must not leave its children running.
const running = new Set<ChildProcess>();
/** Temporary directories made for this process's children (scratchDir), removed when it exits. */
const scratch = new Set<string>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of scratch) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // A child killed just above may still be writing into it: the OS's temporary files then keep it.
    }
  }
});

/**
 * A fresh temporary directory (e.g. a broker's data directory) that stays for as long as this
 * process runs, so that a test may restart what uses it, and is removed when the process exits.
 */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.add(dir);
  return dir;
}

/**
 * Node flags for a process started from source: with CPU_PROF_DIR set, each one writes a CPU profile
 * there when it exits (node --cpu-prof, which NODE_OPTIONS may not carry), for the benchmarks' profiles.
 */
export const profileFlags = (): string[] => (process.env.CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CPU_PROF_DIR}`] : []);

/**
 * Where ports for the processes a test starts come from: below the kernel's ephemeral range, which
 * the machine's outgoing connections take their local ports from. A port from that range (what
 * listen(0) gives) may be taken by some connection in the seconds before the process that is to
 * listen on it has started (a CI run once failed so: EADDRINUSE). Test files run side by side, so
 * each port handed out is also reserved across processes: a directory named after it, made
 * atomically, and left to go stale after RESERVATION_MS.
 */
const EPHEMERAL_LOW = (() => {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > PORTS_FROM + 1000 ? low : 32768;
  } catch {
    return 32768; // Linux's default; other systems: IANA's dynamic range starts higher still
  }
})();
const RESERVED = join(tmpdir(), 'woodytoys-test-ports');
const RESERVATION_MS = 15 * 60_000;

/** A free TCP port on 127.0.0.1 (bound, released, reserved for this process), outside the ephemeral range. */
export async function freePort(): Promise<number> {
  mkdirSync(RESERVED, { recursive: true });
  for (let tries = 0; tries < 1000; tries++) {
    const port = PORTS_FROM + Math.floor(Math.random() * (EPHEMERAL_LOW - PORTS_FROM));
    if (!reserve(port)) continue;
    const server = createServer();
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (bound) {
      await new Promise((r) => server.close(r));
      return port;
    }
  }
  throw new Error(`no free port found in ${PORTS_FROM}–${EPHEMERAL_LOW - 1}`);
}

/** Takes `port` for this process unless another took it less than RESERVATION_MS ago. */
function reserve(port: number): boolean {
  const dir = join(RESERVED, String(port));
  try {
    mkdirSync(dir);
    return true;
  } catch {
    try {
      if (Date.now() - statSync(dir).mtimeMs < RESERVATION_MS) return false;
      utimesSync(dir, new Date(), new Date()); // stale: ours now
      return true;
    } catch {
      return false;
    }
  }
}

export interface Proc {
  name: string;
  child: ChildProcess;
  /** Every JSON log line the process wrote so far. */
  logs: Record<string, unknown>[];
  /** SIGTERM, then wait for the exit (SIGKILL after the timeout). */
  stop(timeoutMs?: number): Promise<number | null>;
  /** kill -9. */
  kill(): Promise<void>;
  /** Resolves with the first log line (past or future) that matches. */
  waitForLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/**
 * Where the processes the tests start run from, by TEST_FROM: `dist`, compiled by `npm run build` and
 * started by plain node, as the container image runs them (`npm test` builds first and sets it); or
 * `source` (the default, for `npm run test:only` while editing), through tsx, whose loader makes
 * each start cost about twice the CPU.
 */
export function testFrom(): 'dist' | 'source' {
  const from = process.env.TEST_FROM ?? 'source';
  if (from !== 'dist' && from !== 'source') throw new Error(`TEST_FROM must be dist or source, not ${JSON.stringify(from)}`);
  return from;
}

/** `entry` (e.g. 'workers/main.ts') compiled: dist/workers/main.js. */
const compiledEntry = (entry: string) => `dist/${entry.replace(/\.ts$/, '.js')}`;

/** How to start `entry` (e.g. 'workers/main.ts'): compiled from dist/ by plain node, as the container image does, or from source through tsx. */
export const entryFrom = (entry: string, compiled: boolean): Pick<StartOptions, 'entry' | 'command'> =>
  compiled ? { command: ['node', ...profileFlags(), compiledEntry(entry)] } : { entry };

export interface StartOptions {
  name: string;
  /**
   * Entry file relative to the repository root, e.g. 'api/orders/main.ts': run compiled under
   * TEST_FROM=dist (testFrom()), unless the build leaves it out (a test's own fixture), else from
   * source with tsx.
   */
  entry?: string;
  /** Or a whole command line, e.g. a container's `["node", "dist/broker/main.js"]`. */
  command?: string[];
  env: Record<string, string>;
  /** The log message that says it is ready; default: any message ending in "listening". */
  ready?: (line: Record<string, unknown>) => boolean;
  timeoutMs?: number;
  /** Print the process's output (for debugging a failing test). */
  echo?: boolean;
}

// A bound on waiting for a start, not a pause: on a shared 2-core machine with other suites and CPU
// burners beside it, compiling and starting one process (tsx) has taken over 20 s.
export const START_TIMEOUT_MS = 60_000;

export async function startProcess({ name, entry, command, env, ready, timeoutMs = START_TIMEOUT_MS, echo = process.env.TEST_ECHO === '1' }: StartOptions): Promise<Proc> {
  const source = entry ?? `${name}/main.ts`;
  const compiled = !command && testFrom() === 'dist' && existsSync(join(ROOT, compiledEntry(source)));
  const [program, ...args] = command ?? (compiled ? entryFrom(source, true).command! : [process.execPath, ...profileFlags(), '--import', 'tsx', source]);
  const child = spawn(program === 'node' ? process.execPath : program!, args, {
    cwd: ROOT,
    // JSON logs whatever the developer's LOG_FORMAT: the lines are parsed below.
    env: { ...process.env, LOG_LEVEL: 'info', LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const waiters: { match: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  let stderr = '';
  createInterface({ input: child.stdout! }).on('line', (text) => {
    if (echo) console.log(`[${name}] ${text}`);
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      line = { msg: text };
    }
    logs.push(line);
    for (const w of [...waiters]) {
      if (w.match(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (echo) process.stderr.write(`[${name}] ${d.toString()}`);
  });
  running.add(child);
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );

  const waitForLog: Proc['waitForLog'] = (match, ms = timeoutMs) => {
    const seen = logs.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: no matching log line within ${ms} ms\n${stderr.slice(-2000)}`)), ms);
      waiters.push({
        match,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited with ${code} before it was ready\n${stderr.slice(-2000)}`));
      });
    });
  };

  const proc: Proc = {
    name,
    child,
    logs,
    waitForLog,
    async stop(ms = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), ms);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
  try {
    await waitForLog(ready ?? ((l) => typeof l.msg === 'string' && l.msg.endsWith('listening')));
  } catch (err) {
    // Never ready: not left running, or its pipes would keep the test file's process alive for good.
    await proc.kill();
    throw err;
  }
  return proc;
}

/** Polls `check` until it returns a truthy value or the time is up. A check that never settles (a
 * request or connection nothing answers) ends at the deadline too, rather than holding the test. */
export async function eventually<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 30_000, intervalMs = 100, what = 'condition', fatal = (_err: unknown): boolean => false } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await withinDeadline(check(), deadline);
      if (value) return value;
    } catch (err) {
      // An error the caller marks as final (a stall, say) ends the wait at once.
      if (fatal(err)) throw err;
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** `value`, or an error (`what`) once `deadline` (epoch ms) has passed. */
export async function withinDeadline<T>(value: Promise<T> | T, deadline: number, what = 'the last check had not settled'): Promise<T> {
  if (!(value instanceof Promise)) return value;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      value,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(what)), Math.max(0, deadline - Date.now()));
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
