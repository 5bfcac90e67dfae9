// Runs real nginx on a rendered gateway config, in the foreground, as the current user: for the
// tests, the bench and `npm run gateway`. Ready once the gateway's own /healthz answers.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { findProgram } from '../lib/programs.js';
import { renderGateway, type RenderedGateway } from './render.js';

export const INSTALL_HINT = 'install nginx (Debian/Ubuntu: sudo apt-get install -y nginx; macOS: brew install nginx)';

export interface RunningGateway extends RenderedGateway {
  child: ChildProcess;
  /** What nginx wrote to stderr so far (its error log). */
  stderr(): string;
  /** Fast shutdown (SIGTERM: open WebSockets would hold a graceful one), SIGKILL after the timeout. */
  stop(timeoutMs?: number): Promise<void>;
}

/** sh script: raise the soft limit on open files as far as the hard one allows, then exec "$@". */
export const RAISE_FILE_LIMIT = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"';

export function nginxPath(): string {
  const path = findProgram('nginx');
  if (!path) throw new Error(`nginx is not installed: ${INSTALL_HINT}`);
  return path;
}

/** `nginx -t` on a rendered config: ok, and nginx's own words. */
export function checkConfig(gateway: RenderedGateway): { ok: boolean; output: string } {
  const args = gateway.args.filter((a, i, all) => a !== '-g' && all[i - 1] !== '-g');
  const result = spawnSync(nginxPath(), [...args, '-t'], { encoding: 'utf8' });
  return { ok: result.status === 0, output: `${result.stdout}${result.stderr}` };
}

/** Renders nginx.conf from `env` and starts nginx on it; resolves once it serves /healthz. */
export async function startGateway(env: NodeJS.ProcessEnv, { timeoutMs = 10_000, echo = false } = {}): Promise<RunningGateway> {
  const gateway = renderGateway(env);
  // nginx writes nothing to stdout unless GATEWAY_ACCESS_LOG points there (then inherit it: a pipe
  // from node is a socket, which nginx cannot open as /dev/stdout).
  // Through sh, to raise the soft limit on open files to the hard one first (Node cannot call
  // setrlimit): nginx.conf's worker_rlimit_nofile only takes effect as root or within the hard limit.
  const child = spawn('/bin/sh', ['-c', RAISE_FILE_LIMIT, 'nginx', nginxPath(), ...gateway.args], { stdio: ['ignore', echo ? 'inherit' : 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const running: RunningGateway = {
    ...gateway,
    child,
    stderr: () => stderr,
    async stop(ms = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), ms);
      await exited;
      clearTimeout(timer);
    },
  };

  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    try {
      const res = await fetch(`${gateway.url}/healthz`);
      await res.body?.cancel();
      if (res.ok) return running;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await running.stop();
  throw new Error(`nginx did not start on ${gateway.url}:\n${stderr.slice(-2000)}`);
}
