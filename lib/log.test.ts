// The log format: JSON for machines, pino-pretty's lines for a terminal, LOG_FORMAT to force either.
// That both stay synchronous, so a process whose reader is gone still exits, is test/shutdown.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { logFormat } from './log.js';

const root = fileURLToPath(new URL('..', import.meta.url));
/** A child that logs one line through createLogger, with the given environment. */
const child = (env: Record<string, string>) => [
  ['--import', 'tsx', '--input-type=module', '-e', "import { createLogger } from './lib/log.ts'; createLogger('orders').info({ order: 'o-1' }, 'order accepted')"],
  { cwd: root, env: { ...process.env, LOG_LEVEL: 'info', ...env }, encoding: 'utf8' as const },
] as const;

describe('logFormat', () => {
  it('is pretty on a terminal and JSON anywhere else, unless LOG_FORMAT says', () => {
    assert.equal(logFormat({}, true), 'pretty');
    assert.equal(logFormat({}, false), 'json');
    assert.equal(logFormat({ LOG_FORMAT: 'json' }, true), 'json');
    assert.equal(logFormat({ LOG_FORMAT: 'pretty' }, false), 'pretty');
  });
});

describe('createLogger', () => {
  it('writes one JSON object per line to a pipe', () => {
    const { stdout, status } = spawnSync(process.execPath, ...child({ LOG_FORMAT: '' }));
    assert.equal(status, 0);
    const line = JSON.parse(stdout.trim()) as Record<string, unknown>;
    assert.deepEqual({ msg: line.msg, service: line.service, order: line.order, level: line.level }, { msg: 'order accepted', service: 'orders', order: 'o-1', level: 30 });
  });

  it('writes readable lines with LOG_FORMAT=pretty: time, level, service, message, fields', () => {
    const { stdout, status } = spawnSync(process.execPath, ...child({ LOG_FORMAT: 'pretty', NO_COLOR: '1', FORCE_COLOR: '' }));
    assert.equal(status, 0);
    assert.match(stdout, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(orders\): order accepted \{"order":"o-1"\}\n$/);
  });
});
