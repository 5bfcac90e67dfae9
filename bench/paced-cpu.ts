// Issue 14's goal for the paced path: the CPU seconds the broker and the workers spend per 1,000
// paced records, at most half of what the code spent when the issue was filed. Measured side by
// side: `demo:rate-limit` of this tree and of an earlier commit (BENCH_BASE: 14b09b6 by default,
// main just before the issue's first change, when each consuming connection held one message) run
// in turns on the same machine, and the medians compared: over the whole drain (the goal's figure),
// and over its second half alone. A cold process spends several times as much per record in its
// first seconds (its code still interpreted, compiled meanwhile on V8's helper threads); the second
// half is closer to the marginal cost of a record once the processes are warm.
//
// The base runs in a git worktree with this tree's node_modules. Its demo did not print CPU yet:
// bench/cpu.ts is copied in and bench/baseline/<base>-demo-cpu.patch adds the same meter as this
// tree's demo has (the broker from when the records are queued, each worker from when it is
// consuming; and a second meter from the first poll past half the records). Both run their
// processes through tsx (the base cannot run compiled), so this tree's demo runs with
// DEMO_FROM=source. DEMO_RECORDS and the other DEMO_* variables reach both.
//
//   npm run bench:paced-cpu   (BENCH_BASE=14b09b6 BENCH_ROUNDS=3)
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './figures.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const BASE = process.env.BENCH_BASE ?? '14b09b6';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
if (!/^[0-9a-f]{7,40}$/.test(BASE)) throw new Error(`BENCH_BASE must be a commit id, not ${BASE}`);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`BENCH_ROUNDS must be a positive integer, not ${process.env.BENCH_ROUNDS}`);

const CPU_LINE = /^paced: CPU seconds per 1,000 records: broker ([\d.]+), workers ([\d.]+), together ([\d.]+); the ERP sandbox ([\d.]+)/m;
const LATE_LINE = /^paced, second half \(from record \d+\): CPU seconds per 1,000 records: broker ([\d.]+), workers ([\d.]+), together ([\d.]+); the ERP sandbox ([\d.]+)/m;
const PACED_ROW = /^ paced\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)/m;

interface Cpu {
  broker: number;
  workers: number;
  together: number;
  erp: number;
}

interface Run extends Cpu {
  code: string;
  /** The same over the second half of the drain, once the processes are warmer (missing when the demo could not measure it). */
  late: Cpu | undefined;
  records: number;
  throttled: number;
  seconds: number;
}

/** A worktree of the base commit, with this tree's node_modules and, where its demo lacks one, the CPU meter. */
function baseTree(): string {
  try {
    execFileSync('git', ['cat-file', '-e', `${BASE}^{commit}`], { cwd: root, stdio: 'ignore' });
  } catch {
    throw new Error(`BENCH_BASE ${BASE} is not in this clone's history (a shallow clone? git fetch --unshallow)`);
  }
  const dir = mkdtempSync(join(tmpdir(), `paced-cpu-${BASE}-`));
  execFileSync('git', ['worktree', 'add', '--detach', dir, BASE], { cwd: root, stdio: 'ignore' });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  if (!readFileSync(join(dir, 'bench/rate-limit.ts'), 'utf8').includes('CPU seconds per 1,000 records')) {
    const patch = join(root, 'bench/baseline', `${BASE}-demo-cpu.patch`);
    if (!existsSync(patch)) throw new Error(`${BASE}'s demo prints no CPU figures and there is no ${patch} to add them`);
    copyFileSync(join(root, 'bench/cpu.ts'), join(dir, 'bench/cpu.ts'));
    execFileSync('git', ['apply', patch], { cwd: dir });
  }
  return dir;
}

/** One `demo:rate-limit` in `cwd`; its figures, parsed from what it prints. */
function demo(code: string, cwd: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/rate-limit.ts'], { cwd, env: { ...process.env, DEMO_FROM: 'source' }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (status) => {
      const cpu = CPU_LINE.exec(out);
      const row = PACED_ROW.exec(out);
      if (status !== 0 || !cpu || !row) return reject(new Error(`${code}'s demo ended with ${status} and printed:\n${out}`));
      const late = LATE_LINE.exec(out);
      resolve({ code, ...figures(cpu), late: late ? figures(late) : undefined, records: Number(row[1]), throttled: Number(row[3]), seconds: Number(row[4]) });
    });
  });
}

const figures = (m: RegExpExecArray): Cpu => {
  const [broker, workers, together, erp] = m.slice(1).map(Number) as [number, number, number, number];
  return { broker, workers, together, erp };
};

const cpuText = (c: Cpu) => `broker ${c.broker.toFixed(3)}  workers ${c.workers.toFixed(3)}  together ${c.together.toFixed(3)}  ERP sandbox ${c.erp.toFixed(3)}`;
const fmt = (r: Run) =>
  `${r.code.padEnd(8)} ${cpuText(r)}  (${r.records} records in ${r.seconds.toFixed(2)} s, ${r.throttled} × 429)${r.late ? `\n  ${''.padEnd(8)} second half: ${cpuText(r.late)}` : ''}`;

const dir = baseTree();
const runs: Run[] = [];
try {
  console.log(`CPU seconds per 1,000 paced records, ${BASE} and this tree in turns, ${ROUNDS} round(s) (DEMO_RECORDS=${process.env.DEMO_RECORDS ?? 10_000})`);
  for (let round = 0; round < ROUNDS; round++) {
    // Each round the other one goes first, so that neither always meets the machine as the other left it.
    const order: Array<[string, string]> = round % 2 === 0 ? [[BASE, dir], ['this', root]] : [['this', root], [BASE, dir]];
    for (const [code, cwd] of order) {
      const run = await demo(code, cwd);
      runs.push(run);
      console.log(`  ${fmt(run)}`);
    }
  }
} finally {
  execFileSync('git', ['worktree', 'remove', '--force', dir], { cwd: root, stdio: 'ignore' });
}
type Part = 'whole' | 'late';
const partOf = (r: Run, part: Part): Cpu | undefined => (part === 'whole' ? r : r.late);
/** Medians of one code's runs, over the whole drain or its second half; undefined when a run lacks the part. */
const medians = (code: string, part: Part): Cpu | undefined => {
  const parts = runs.filter((r) => r.code === code).map((r) => partOf(r, part));
  if (parts.some((p) => p === undefined)) return undefined;
  const of = (key: keyof Cpu) => median(parts.map((p) => p![key]));
  return { broker: of('broker'), workers: of('workers'), together: of('together'), erp: of('erp') };
};
for (const [part, title] of [
  ['whole', 'the whole drain (the goal: each process measured from when its part began, warm-up included)'],
  ['late', 'the second half of the drain alone (the processes warmer: closer to the marginal cost of a record)'],
] as const) {
  const base = medians(BASE, part);
  const ours = medians('this', part);
  if (!base || !ours) {
    console.log(`${title}: not measured in every run`);
    continue;
  }
  console.log(`medians, ${title}:`);
  console.log(`  ${BASE.padEnd(8)} ${cpuText(base)}`);
  console.log(`  ${'this'.padEnd(8)} ${cpuText(ours)}`);
  const ratio = ours.together / base.together;
  const verdict = part === 'whole' ? ` (goal ≤ 0.5: ${ratio <= 0.5 ? 'met' : 'not met'})` : '';
  console.log(`  this tree / ${BASE}, broker + workers: ${ratio.toFixed(2)} ×${verdict}; the ERP sandbox ${(ours.erp / base.erp).toFixed(2)} ×`);
}
