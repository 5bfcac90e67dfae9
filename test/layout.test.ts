// The house plan's edges, checked on every import in the repository (README, "Layout"): services
// do not import each other, production code imports no test or benchmark code, benchmarks share
// the process harness with the tests rather than reaching into test/, and a test beside its module
// runs in one process (it may not start the system through the harness).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import ts from 'typescript';
import { ROOT } from '../harness/process.js';

interface Edge {
  from: string;
  to: string;
}

const sources = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.ts'], { cwd: ROOT, encoding: 'utf8' })
  .split('\n')
  .filter((f) => f && !f.startsWith('node_modules/'));

/** Every relative import (static, dynamic, type-only, re-export) of every TypeScript file, as
 * repository paths; read with TypeScript's own pre-processor, not a regular expression. */
export function importsOf(from: string, text: string): Edge[] {
  return ts
    .preProcessFile(text, true, true)
    .importedFiles.map((f) => f.fileName)
    .filter((specifier) => specifier.startsWith('.'))
    .map((specifier) => ({ from, to: normalize(join(dirname(from), specifier)).replace(/\.js$/, '.ts') }));
}

function edges(): Edge[] {
  return sources.flatMap((from) => {
    try {
      return importsOf(from, readFileSync(join(ROOT, from), 'utf8'));
    } catch {
      return []; // listed but deleted in the work tree
    }
  });
}

const all = edges();
const top = (path: string) => path.split('/')[0]!;
const isTest = (path: string) => path.endsWith('.test.ts') || top(path) === 'test';
const show = (list: Edge[]) => list.map((e) => `${e.from} → ${e.to}`).join('\n');

describe('layout: the edges between rooms', () => {
  it('finds the imports it checks (the scan itself works), type-only and dynamic ones included', () => {
    assert.ok(all.length > 200, `only ${all.length} imports found`);
    assert.ok(all.some((e) => e.from === 'api/orders/main.ts' && e.to.startsWith('lib/')));
    const found = importsOf('api/stock/example.ts', "import type { X } from '../catalog/store.js';\nconst y = await import('../orders/app.js');\nexport * from './levels.js';");
    assert.deepEqual(found.map((e) => e.to), ['api/catalog/store.ts', 'api/orders/app.ts', 'api/stock/levels.ts']);
  });

  it('services under api/ import nothing from each other', () => {
    const service = (path: string) => (top(path) === 'api' ? path.split('/')[1] : undefined);
    const bad = all.filter((e) => service(e.from) && service(e.to) && service(e.from) !== service(e.to));
    assert.equal(bad.length, 0, `shared code belongs in lib/:\n${show(bad)}`);
  });

  it('production code imports no tests, no harness and no benchmarks', () => {
    const bad = all.filter((e) => !isTest(e.from) && !['bench', 'harness'].includes(top(e.from)) && ['test', 'harness', 'bench'].includes(top(e.to)));
    assert.equal(bad.length, 0, show(bad));
  });

  it('benchmarks and the harness import nothing from test/', () => {
    const bad = all.filter((e) => ['bench', 'harness'].includes(top(e.from)) && top(e.to) === 'test');
    assert.equal(bad.length, 0, show(bad));
  });

  it('a test beside its module starts no processes through the harness (those tests live in test/)', () => {
    const starters = new Set(['harness/broker.ts', 'harness/stack.ts', 'harness/workers.ts', 'harness/gateway.ts']);
    const bad = all.filter((e) => e.from.endsWith('.test.ts') && top(e.from) !== 'test' && starters.has(e.to));
    assert.equal(bad.length, 0, show(bad));
  });

  it('every test is found by npm test: *.test.ts beside its module or in test/, nowhere else', () => {
    const misplaced = sources.filter((f) => f.endsWith('.test.ts') && ['harness', 'bench', 'dashboard', 'docs'].includes(top(f)));
    assert.deepEqual(misplaced, []);
  });
});
