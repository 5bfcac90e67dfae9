// CPU-burning child processes, for tests whose behaviour must hold on a busy machine (a loaded
// 2-core CI box). Each spins until stopped, or until its own deadline: a test that crashes leaves
// nothing running for long.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

export interface CpuLoad {
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** `processes` busy loops (default: 2, one per core of the CI box), each for at most `maxMs`. */
export function burnCpu({ processes = 2, maxMs = 180_000 } = {}): CpuLoad {
  const children = Array.from({ length: processes }, () => {
    const child = spawn(process.execPath, ['-e', `const end = Date.now() + ${maxMs}; while (Date.now() < end);`], { stdio: 'ignore' });
    running.add(child);
    child.once('exit', () => running.delete(child));
    return child;
  });
  return {
    async stop() {
      await Promise.all(
        children.map(async (child) => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const exited = once(child, 'exit');
          child.kill('SIGKILL');
          await exited;
        }),
      );
    },
  };
}
