// Secrets come only from the environment: nothing secret is committed. Scans every file git
// tracks for private keys, password hashes, cloud keys, tracked .env files and secret-looking
// assignments whose value is written out (placeholders such as change-me and ${VAR} are fine).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../harness/process.js';

const git = spawnSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' });
const files = git.status === 0 ? git.stdout.split('\0').filter(Boolean) : [];

const patterns: [string, RegExp][] = [
  ['a private key', /-----BEGIN [A-Z ]*PRIVATE KEY-----/],
  ['a Mosquitto password hash', /\$[67]\$\d+\$[A-Za-z0-9+/]{20,}/],
  ['an AWS access key', /\bAKIA[0-9A-Z]{16}\b/],
  ['a GitHub token', /\bgh[pousr]_[A-Za-z0-9]{30,}\b/],
];
const SECRET_NAME = '[A-Z_]*(?:PASSWORD|PASSWORDS|API_KEY|SECRET|TOKEN)[A-Z_]*';
/** In code, a secret-named setting given a string literal; elsewhere (env files, YAML, docs), a written value. */
const literal = {
  code: new RegExp(`\\b${SECRET_NAME}\\s*[=:]\\s*(['"\`])(?!change-me)[^'"\`$]{6,}\\1`),
  config: new RegExp(`^\\s*(?:-\\s*)?${SECRET_NAME}\\s*[=:]\\s*["']?(?!change-me|\\$)[^\\s"'#]{6,}`, 'm'),
};
/** Test fixtures hold made-up keys on purpose. */
const isTest = (file: string) => file.startsWith('test/') || file.includes('.test.');

describe('secrets only from the environment', { skip: git.status === 0 ? false : 'not a git checkout' }, () => {
  it('no .env file is tracked (only .env.example)', () => {
    assert.deepEqual(files.filter((f) => /(^|\/)\.env(\..+)?$/.test(f) && !f.endsWith('.env.example')), []);
  });

  it('no tracked file holds a secret', () => {
    const found: string[] = [];
    for (const file of files) {
      const path = join(ROOT, file);
      let text: string;
      try {
        if (statSync(path).size > 2_000_000) continue;
        text = readFileSync(path, 'utf8');
      } catch {
        continue; // deleted in the work tree
      }
      if (text.includes('\0')) continue;
      const written = isTest(file) ? [] : [['a written-out secret', /\.(ts|js|mjs|cjs)$/.test(file) ? literal.code : literal.config] as [string, RegExp]];
      for (const [what, re] of [...patterns, ...written]) {
        const m = re.exec(text);
        if (m) found.push(`${file}: ${what} (${m[0].trim().slice(0, 40)}…)`);
      }
    }
    assert.deepEqual(found, []);
  });
});
