// CPU time of the processes a benchmark started, read from /proc/<pid>/stat (user + system), so a
// benchmark can say what its work cost in CPU seconds, not only how long it took: on a shared
// machine wall time depends on the neighbours, CPU seconds much less.
import { readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux). */
const TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds `pid` has used so far (user + system), or undefined when it is gone or not on Linux. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return undefined;
  }
}

/** The number after `name:` in /proc/<pid>/<file> (e.g. status's VmRSS in KiB), or undefined when gone or not on Linux. */
function procNumber(pid: number | undefined, file: string, name: string): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const line = readFileSync(`/proc/${pid}/${file}`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${name}:`));
    return line ? Number(line.split(/\s+/)[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Write system calls `pid` has made so far (/proc/<pid>/io syscw: write, writev, pwrite…), or
 * undefined. A count that the neighbours on the machine move much less than CPU seconds (only
 * through what happens to fall into one turn of an event loop and leave in one write).
 */
export const writeCalls = (pid: number | undefined): number | undefined => procNumber(pid, 'io', 'syscw');

/** Resident memory of `pid` in MiB (VmRSS), or undefined. */
export function rssMiB(pid: number | undefined): number | undefined {
  const kib = procNumber(pid, 'status', 'VmRSS');
  return kib === undefined ? undefined : kib / 1024;
}

/** Where `pid`'s resident memory is, in MiB: the C library's main heap (malloc: Buffers, SQLite's pages), other anonymous memory (the JavaScript heap, threads' arenas) and files mapped in. */
export interface MemoryParts {
  rss: number;
  mallocHeap: number;
  otherAnonymous: number;
  files: number;
}

/** Reads `pid`'s memory map (/proc/<pid>/smaps), or undefined. */
export function memoryParts(pid: number | undefined): MemoryParts | undefined {
  if (pid === undefined) return undefined;
  try {
    let rss = 0;
    let anonymous = 0;
    let mallocHeap = 0;
    let inHeap = false;
    for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
      if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inHeap = line.endsWith('[heap]');
      else if (line.startsWith('Rss:')) {
        const kib = Number(line.split(/\s+/)[1]);
        rss += kib;
        if (inHeap) mallocHeap += kib;
      } else if (line.startsWith('Anonymous:')) anonymous += Number(line.split(/\s+/)[1]);
    }
    return { rss: rss / 1024, mallocHeap: mallocHeap / 1024, otherAnonymous: (anonymous - mallocHeap) / 1024, files: (rss - anonymous) / 1024 };
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds spent by named processes between mark() and read(): mark each process when its
 * measured part begins (a process started later is marked then), read them all at the end.
 */
export class CpuMeter {
  readonly #start = new Map<string, { pid: number; at: number; writes: number | undefined }>();
  readonly #spent = new Map<string, number>();
  readonly #writes = new Map<string, number>();

  mark(name: string, pid: number | undefined): void {
    const at = cpuSeconds(pid);
    if (pid !== undefined && at !== undefined) this.#start.set(name, { pid, at, writes: writeCalls(pid) });
  }

  /**
   * A meter over the processes marked so far, marked again now: what they spend from here on (the
   * part of a run after its start, once the code is warm).
   */
  since(): CpuMeter {
    const later = new CpuMeter();
    for (const [name, { pid }] of this.#start) later.mark(name, pid);
    return later;
  }

  /** How many marked processes have names starting with `prefix`. */
  marked(prefix = ''): number {
    let n = 0;
    for (const name of this.#start.keys()) if (name.startsWith(prefix)) n++;
    return n;
  }

  /** Records what each marked process has spent since its mark (call before stopping them). */
  read(): Map<string, number> {
    for (const [name, { pid, at, writes }] of this.#start) {
      const now = cpuSeconds(pid);
      if (now !== undefined) this.#spent.set(name, now - at);
      const written = writeCalls(pid);
      if (written !== undefined && writes !== undefined) this.#writes.set(name, written - writes);
    }
    return this.#spent;
  }

  /** Sum over the names that start with `prefix` (e.g. 'worker'). */
  total(prefix = ''): number {
    return sumOver(this.#spent, prefix) ?? 0;
  }

  /** Write system calls since the marks, summed as total() sums CPU seconds; undefined when no such process's /proc/<pid>/io could be read. */
  writes(prefix = ''): number | undefined {
    return sumOver(this.#writes, prefix);
  }
}

/** Sum of the values whose names start with `prefix`; undefined when there is none. */
const sumOver = (values: Map<string, number>, prefix: string): number | undefined => {
  let sum: number | undefined;
  for (const [name, v] of values) if (name.startsWith(prefix)) sum = (sum ?? 0) + v;
  return sum;
};

/** Processes whose parent is `pid` (e.g. nginx's workers under its master). */
export function childPids(pid: number | undefined): number[] {
  if (pid === undefined) return [];
  const children: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) children.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}
