// Runs a real Mosquitto with the repo's mosquitto.conf and ACL, rendered for a given port, data
// directory and password file: used by the conformance tests and the throughput benchmark.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const mosquittoConf = fileURLToPath(new URL('./mosquitto.conf', import.meta.url));
export const aclFile = fileURLToPath(new URL('./acl', import.meta.url));

export interface MosquittoOptions {
  port: number;
  dataDir: string;
  passwordFile: string;
  /** ACL file; default the repo's (broker/mosquitto/acl). */
  aclFile?: string;
  /** Mosquitto program; /usr/sbin/mosquitto when installed from Debian packages. */
  program?: string;
}

/** The repo's mosquitto.conf with this run's listener, paths and an absolute ACL path. */
export function renderMosquittoConfig({ port, dataDir, passwordFile, aclFile: acl = aclFile }: MosquittoOptions): string {
  const text = readFileSync(mosquittoConf, 'utf8');
  const replace = (directive: string, value: string) => (t: string) => {
    const re = new RegExp(`^${directive} .*$`, 'm');
    if (!re.test(t)) throw new Error(`mosquitto.conf has no ${directive} line`);
    return t.replace(re, `${directive} ${value}`);
  };
  return (
    [
      replace('listener', `${port} 127.0.0.1`),
      replace('password_file', passwordFile),
      replace('acl_file', acl),
      replace('persistence_location', `${dataDir.replace(/\/?$/, '/')}`),
    ].reduce((t, f) => f(t), text) +
    // Started as root, Mosquitto would switch to the `mosquitto` user, which cannot read our temporary files.
    (process.getuid?.() === 0 ? '\nuser root\n' : '')
  );
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
  logs: string[];
  stop(): Promise<void>;
  kill(): Promise<void>;
}

export async function startMosquitto(opts: MosquittoOptions): Promise<RunningMosquitto> {
  mkdirSync(opts.dataDir, { recursive: true });
  const conf = join(opts.dataDir, 'mosquitto.conf');
  writeFileSync(conf, renderMosquittoConfig(opts));
  const child = spawn(opts.program ?? 'mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  return { url: `mqtt://127.0.0.1:${opts.port}`, logs, stop: end('SIGTERM'), kill: end('SIGKILL') };
}
