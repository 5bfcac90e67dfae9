// The test runner's report keeps every verdict under --test-force-exit (scripts/test-stdio.ts). Many
// test files run side by side with the flags `npm test` uses, and the runner must count every test:
// without the preload, the same run on this 2-core machine reported 1,976–1,999 of 2,000 tests
// (nodejs/node#64833).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const preload = fileURLToPath(new URL('./test-stdio.ts', import.meta.url));
const FILES = 10;
const TESTS = 200;

/** Runs the files with node --test and the preload (from the repository, where tsx resolves); resolves with the runner's exit code and output. */
function runTests(files: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', '--import', preload, '--test', '--test-force-exit', '--test-concurrency=4', '--test-reporter=tap', ...files],
      // Without NODE_TEST_CONTEXT, which this file's own runner set: that would make it report as a test file does.
      { cwd: root, env: { ...process.env, NODE_TEST_CONTEXT: undefined }, maxBuffer: 64 * 1024 * 1024, timeout: 110_000 },
      (err, stdout) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, out: stdout }),
    );
  });
}

const count = (out: string, name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(out)?.[1] ?? NaN);

describe('test runner output under --test-force-exit', () => {
  it('reports every test of many files run side by side, and a failure in the last test of a file', { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'force-exit-'));
    try {
      // Long test names make each file's report large, as a real suite's is.
      const name = 'x'.repeat(300);
      const files = Array.from({ length: FILES }, (_, f) => {
        const file = join(dir, `f${f}.test.mjs`);
        const tests = Array.from({ length: TESTS }, (_, t) =>
          f === FILES - 1 && t === TESTS - 1 ? `test('last of all ${name}', () => { throw new Error('the last verdict'); });` : `test('t${t} ${name}', () => {});`,
        );
        writeFileSync(file, `import { test } from 'node:test';\n${tests.join('\n')}\n`);
        return file;
      });
      const { code, out } = await runTests(files);
      assert.equal(count(out, 'tests'), FILES * TESTS, 'every test reported');
      assert.equal(count(out, 'pass'), FILES * TESTS - 1, 'every pass reported');
      assert.equal(count(out, 'fail'), 1, 'the one failure reported');
      assert.match(out, /not ok \d+ - last of all x+\n[\s\S]*the last verdict/, "the failed test's name and error reported");
      assert.equal(code, 1, 'the run fails');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
