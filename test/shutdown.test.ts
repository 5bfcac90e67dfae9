// SIGTERM stops a process cleanly (exit 0) even when nobody reads its output any more, as after the
// crash of the parent that started it. pino's default asynchronous destination used to retry the
// EPIPE forever while flushing at exit, so such a process hung in process.exit (see lib/log.ts).
// Graceful shutdown under load, process by process, is exercised by test/chaos.test.ts.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startProcess } from '../harness/process.js';

describe('SIGTERM with nobody reading stdout', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'woodytoys-shutdown-'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  for (const [name, entry, env] of [
    ['erp', 'sandbox/erp/main.ts', { ERP_PUBLISH_STATS: 'false' }],
    ['catalog', 'api/catalog/main.ts', {}],
    // pino-pretty in front of the same synchronous destination (npm start at a terminal).
    ['catalog with pretty logs', 'api/catalog/main.ts', { LOG_FORMAT: 'pretty' }],
  ] as const) {
    it(`${name} exits 0`, async () => {
      const proc = await startProcess({
        name,
        entry,
        env: { DATA_DIR: join(dataDir, name), HTTP_PORT: '0', MQTT_URL: `mqtt://127.0.0.1:${await freePort()}`, ...env },
        // A pretty line is not JSON: the process helper keeps it whole as the message.
        ready: (l) => /listening/.test(String(l.msg)),
      });
      try {
        // Handlers are installed just after the "listening" line: an answered request proves it.
        const listening = proc.logs.find((l) => /listening/.test(String(l.msg)))!;
        const http = String(listening.http ?? /"http":"([^"]+)"/.exec(String(listening.msg))?.[1]);
        assert.equal((await fetch(`${http}/healthz`)).status, 200);
        // The reader goes away, as when the parent crashes; the next log line meets EPIPE.
        proc.child.stdout!.destroy();
        assert.equal(await proc.stop(10_000), 0);
      } finally {
        await proc.kill();
      }
    });
  }
});

describe('SIGTERM while a process is still starting', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'woodytoys-starting-'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it('ends a worker that cannot reach its broker yet with exit code 0', async () => {
    // With no broker the worker never joins its groups, so its stop steps are not registered yet.
    const proc = await startProcess({
      name: 'worker',
      entry: 'workers/main.ts',
      env: { DATA_DIR: dataDir, HTTP_PORT: '0', WORKER_ID: 'starting', MQTT_URL: `mqtt://127.0.0.1:${await freePort()}` },
      ready: (l) => l.msg === 'worker listening',
    });
    try {
      assert.equal(await proc.stop(10_000), 0);
    } finally {
      await proc.kill();
    }
  });
});
