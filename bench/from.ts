// Where a benchmark's own processes run from. `dist`: compiled by `npm run build` (run here first)
// and started by plain node, as the container image runs them. `source`: through tsx, as `npm start`
// runs them in development; tsx's loader compiles each module at start and keeps a thread of its own.
import { execFileSync } from 'node:child_process';

export type From = 'dist' | 'source';

/** Reads `variable` (dist by default), and builds when it says dist. */
export function processesFrom(variable: string, say: (line: string) => void = (l) => console.error(l)): From {
  const from = process.env[variable] ?? 'dist';
  if (from !== 'dist' && from !== 'source') throw new Error(`${variable} must be dist or source, not ${from}`);
  if (from === 'dist') {
    say('building (npm run build)');
    // Its output goes to stderr: a benchmark's stdout may be JSON.
    execFileSync('npm', ['run', '-s', 'build'], { stdio: ['ignore', 2, 2] });
  }
  return from;
}
