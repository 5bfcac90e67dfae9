// Runs a real Mosquitto with the repo's mosquitto.conf and ACL, rendered for a given port, data
// directory and password file: used by `BROKER=mosquitto npm start`, the tests (the conformance
// suite, the stack on Mosquitto) and the throughput benchmark.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findProgram } from '../../lib/programs.js';
import { formatPasswordFile } from '../password-hash.js';

export const mosquittoConf = fileURLToPath(new URL('./mosquitto.conf', import.meta.url));
export const aclFile = fileURLToPath(new URL('./acl', import.meta.url));
export const MOSQUITTO_INSTALL_HINT = 'install Mosquitto (Debian/Ubuntu: sudo apt-get install -y mosquitto; macOS: brew install mosquitto)';

export interface MosquittoOptions {
  port: number;
  /** A WebSocket listener too (the dashboard's /mqtt behind nginx); none when unset. */
  wsPort?: number;
  /** Interface of the listeners; 127.0.0.1 unless set. */
  host?: string;
  dataDir: string;
  passwordFile: string;
  /** ACL file; default the repo's (broker/mosquitto/acl). */
  aclFile?: string;
  /** Mosquitto program; found on the PATH or in /usr/sbin (Debian's packages) when unset. */
  program?: string;
  /** Directives whose value differs from the repo's config for this run (a benchmark's variant). */
  settings?: Record<string, string>;
}

/** The repo's mosquitto.conf with this run's listeners, paths and an absolute ACL path. */
export function renderMosquittoConfig({ port, wsPort, host = '127.0.0.1', dataDir, passwordFile, aclFile: acl = aclFile, settings = {} }: MosquittoOptions): string {
  const text = readFileSync(mosquittoConf, 'utf8');
  const replace = (directive: string, value: string) => (t: string) => {
    const re = new RegExp(`^${directive} .*$`, 'm');
    if (!re.test(t)) throw new Error(`mosquitto.conf has no ${directive} line`);
    return t.replace(re, `${directive} ${value}`);
  };
  return (
    [
      replace('listener', `${port} ${host}`),
      replace('password_file', passwordFile),
      replace('acl_file', acl),
      replace('persistence_location', `${dataDir.replace(/\/?$/, '/')}`),
      ...Object.entries(settings).map(([directive, value]) => replace(directive, value)),
    ].reduce((t, f) => f(t), text) +
    // per_listener_settings is false: the second listener shares the users, ACL and limits above.
    (wsPort === undefined ? '' : `\nlistener ${wsPort} ${host}\nprotocol websockets\n`) +
    // Started as root, Mosquitto would switch to the `mosquitto` user, which cannot read our temporary files.
    (process.getuid?.() === 0 ? '\nuser root\n' : '')
  );
}

/** Writes the rendered config into the data directory; returns its path (for `mosquitto -c`). */
export function writeMosquittoConfig(opts: MosquittoOptions): string {
  mkdirSync(opts.dataDir, { recursive: true });
  const conf = join(opts.dataDir, 'mosquitto.conf');
  writeFileSync(conf, renderMosquittoConfig(opts));
  return conf;
}

/** A password file for user → plain password, readable by its owner only (Mosquitto's format). */
export function writeMosquittoPasswords(file: string, passwords: Record<string, string>): void {
  writeFileSync(file, formatPasswordFile(passwords), { mode: 0o600 });
}

/** The Mosquitto program's path; throws with the install command when it is missing. */
export function mosquittoProgram(): string {
  const program = findProgram('mosquitto');
  if (!program) throw new Error(`mosquitto is not installed: ${MOSQUITTO_INSTALL_HINT}`);
  return program;
}

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

export interface RunningMosquitto {
  url: string;
  child: ChildProcess;
  /** What it wrote so far (stdout is block-buffered through a pipe: readiness is probed on the port). */
  logs: string[];
  stop(): Promise<void>;
  kill(): Promise<void>;
}

export async function startMosquitto(opts: MosquittoOptions): Promise<RunningMosquitto> {
  const conf = writeMosquittoConfig(opts);
  const child = spawn(opts.program ?? mosquittoProgram(), ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  child.stdout.on('data', (d: Buffer) => logs.push(d.toString()));
  child.stderr.on('data', (d: Buffer) => logs.push(d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 10_000;
  while (!(await accepts(opts.port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`mosquitto did not start on port ${opts.port}:\n${logs.join('')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const end = (signal: NodeJS.Signals) => async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return { url: `mqtt://127.0.0.1:${opts.port}`, child, logs, stop: end('SIGTERM'), kill: end('SIGKILL') };
}
