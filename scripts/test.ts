// `npm test`: runs every *.test.ts in the repository with node:test (tsx compiles on the fly).
// Node 20's test runner does not expand globs itself, so the files are found here.
// Arguments narrow the run: `npm test -- test/order-flow.test.ts`.
// `--from=dist` (what `npm test` passes) builds first (`npm run build`) and has the tests start the
// project's processes compiled, as the container image runs them (TEST_FROM, harness/process.ts):
// tsx's loader costs each start about twice the CPU, and the suite starts hundreds of processes.
// Without it (`npm run test:only`), they run from source, with whatever was just edited.
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const skip = new Set(['node_modules', 'dist', 'data', '.git', 'test-output']);

function find(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    if (skip.has(name)) return [];
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return find(path);
    return name.endsWith('.test.ts') ? [relative(root, path)] : [];
  });
}

const args = process.argv.slice(2);
// The last --from wins, so `npm test -- --from=source FILE` overrides the one `npm test` passes.
const fromFlag = args.filter((a) => a.startsWith('--from=')).at(-1);
const from = fromFlag?.slice('--from='.length) ?? process.env.TEST_FROM ?? 'source';
if (from !== 'dist' && from !== 'source') {
  console.error(`--from (or TEST_FROM) must be dist or source, not ${JSON.stringify(from)}`);
  process.exit(2);
}
const named = args.filter((a) => !a.startsWith('--from='));
const files = named.length > 0 ? named : find(root).sort();
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const concurrency = process.env.TEST_CONCURRENCY ?? '2';
// A whole run takes 6-9 minutes on a 2-core machine, quiet or beside two CPU burners (20 from source
// through tsx); past this limit, something is hanging,
// and failing with that said beats a CI job that times out without a word.
const limitMin = Number(process.env.TEST_RUN_LIMIT_MIN ?? '40');
// A test file that runs past this is stopped and reported by name, with the tests it had passed, and
// the run goes on. (Node 20 applies --test-timeout to each file as a whole; the longest, the chaos
// tests, takes 1.5 minutes beside two CPU burners, 5 from source.) Without it, one hung file hides every
// later file's results behind it until the run limit below.
const fileLimitMin = Number(process.env.TEST_FILE_LIMIT_MIN ?? '15');
for (const [name, value] of [['TEST_RUN_LIMIT_MIN', limitMin], ['TEST_FILE_LIMIT_MIN', fileLimitMin]] as const) {
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`${name} must be a positive number of minutes, not ${JSON.stringify(process.env[name])}`);
    process.exit(2);
  }
}
// --test-force-exit: a test file's process ends once its tests have, even if a test that failed
// left a client or timer behind (such a file would otherwise hold the whole run forever).
// scripts/test-stdio.ts, preloaded here and handed on to every test file's process, makes their
// stdout and stderr write synchronously. Without it the forced exit can drop the last results a
// file's process was still writing to this one (nodejs/node#64833, open): the run reported 487 of
// 494 tests once beside two CPU burners, and a lost failure's name and error with them.
// scripts/test-stdio.test.ts shows that every verdict now arrives.
if (from === 'dist') {
  console.log('building dist/ (npm run build): the tests start the processes compiled');
  execFileSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' });
}
const runner = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    '--import',
    './scripts/test-stdio.ts',
    '--test',
    '--test-force-exit',
    `--test-timeout=${Math.round(fileLimitMin * 60_000)}`,
    `--test-concurrency=${concurrency}`,
    '--test-reporter=spec',
    ...files,
  ],
  // Its own process group, so that the limit and Ctrl-C end the test files' processes as well.
  { cwd: root, stdio: 'inherit', detached: true, env: { ...process.env, TEST_FROM: from } },
);
const killGroup = (signal: NodeJS.Signals) => {
  try {
    process.kill(-runner.pid!, signal);
  } catch {
    // already gone
  }
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => killGroup(signal));
const limit = setTimeout(() => {
  console.error(`\nnpm test: the run went past ${limitMin} minutes (TEST_RUN_LIMIT_MIN); a test is hanging. Stopping it.`);
  killGroup('SIGKILL');
}, limitMin * 60_000);
runner.on('exit', (code) => {
  clearTimeout(limit);
  killGroup('SIGKILL'); // anything a test file left running
  process.exit(code ?? 1); // no code: ended by a signal
});
