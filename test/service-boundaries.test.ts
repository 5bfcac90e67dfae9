// The services under api/ share only lib/: a file of api/<a>/ that imports (statically, dynamically
// or as a type) anything under api/<b>/ fails here, so each service can change, move or go alone.
// Imports are read with TypeScript's own pre-processor, not a regular expression.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('..', import.meta.url));
const apiDir = join(root, 'api');

/** The service a path belongs to (its folder under api/), if any. */
const serviceOf = (path: string) => {
  const inside = relative(apiDir, path);
  return inside.startsWith('..') || inside === '' ? undefined : inside.split(sep)[0];
};

const sources = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return /\.(ts|js|mts|cts)$/.test(entry.name) ? [path] : [];
  });

/** Each relative import of a file, resolved to an absolute path. */
function importsOf(file: string): { specifier: string; target: string }[] {
  const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return importedFiles
    .map((f) => f.fileName)
    .filter((specifier) => specifier.startsWith('.'))
    .map((specifier) => ({ specifier, target: resolve(dirname(file), specifier) }));
}

describe('service boundaries', () => {
  it('no file of one api/ service imports another service', () => {
    const files = sources(apiDir);
    assert.ok(files.length > 10, `found ${files.length} files under api/`);
    const crossings = files.flatMap((file) => {
      const from = serviceOf(file)!;
      return importsOf(file)
        .filter(({ target }) => serviceOf(target) !== undefined && serviceOf(target) !== from)
        .map(({ specifier }) => `${relative(root, file)} imports ${specifier}`);
    });
    assert.deepEqual(crossings, [], 'shared code belongs in lib/');
  });

  it('sees a crossing when there is one', () => {
    const file = join(apiDir, 'stock', 'example.ts');
    const target = resolve(dirname(file), '../catalog/store.js');
    assert.equal(serviceOf(file), 'stock');
    assert.equal(serviceOf(target), 'catalog');
    assert.equal(serviceOf(resolve(dirname(file), '../../lib/db.js')), undefined);
    const { importedFiles } = ts.preProcessFile("import type { X } from '../catalog/store.js';\nconst y = await import('../orders/app.js');", true, true);
    assert.deepEqual(importedFiles.map((f) => f.fileName), ['../catalog/store.js', '../orders/app.js']);
  });
});
