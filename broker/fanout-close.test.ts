// The fan-out's close as Aedes calls it (broker.close ends with mq.close), against a real Redis:
// publishes handed to Redis before the close finish, and the close itself ends without an
// unhandled rejection (finishFanoutOnClose, aedes-adapter.ts). Unpatched, mqemitter-redis sends QUIT
// at once and leaves its promise unhandled; ioredis rejects it when commands are still queued.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import MQEmitterRedis from 'mqemitter-redis';
import { startRedis, type RunningRedis } from '../harness/redis.js';
import { eventually } from '../harness/process.js';
import { requireProgram } from '../test/support/programs.js';
import { finishFanoutOnClose } from './aedes-adapter.js';

describe("the fan-out's close", { skip: requireProgram('redis-server', 'redis-server') }, () => {
  let redis: RunningRedis;
  before(async () => {
    redis = await startRedis({ appendonly: false });
  });
  after(async () => {
    await redis?.stop();
  });

  it('lets the publishes under way finish, then ends both connections without an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      for (let round = 0; round < 5; round++) {
        const mq = MQEmitterRedis({ connectionString: redis.url });
        const quitFailures: string[] = [];
        finishFanoutOnClose(mq, (err, connection) => quitFailures.push(`${connection}: ${err.message}`));
        await new Promise<void>((resolve) => mq.on('fanout-close/+', (_m: unknown, done: () => void) => done(), resolve));
        const results: Array<Error | null | undefined> = [];
        const publishes = 2000;
        for (let i = 0; i < publishes; i++) mq.emit({ topic: `fanout-close/${i}`, payload: Buffer.from('x') }, (err?: Error | null) => results.push(err));
        // As Aedes does: close in the same turn as the last publishes, and more publishes come
        // (the ends of publish pipelines under way) while it closes.
        const closed = new Promise<void>((resolve) => mq.close(resolve));
        let late = 0;
        for (let i = 0; i < 200; i++) mq.emit({ topic: `fanout-close/late-${i}`, payload: Buffer.from('x') }, () => late++);
        await new Promise((r) => setImmediate(r));
        for (let i = 0; i < 200; i++) mq.emit({ topic: `fanout-close/later-${i}`, payload: Buffer.from('x') }, () => late++);
        await closed;
        // Rejections surface on the next turns.
        await new Promise((r) => setTimeout(r, 50));
        assert.equal(results.length, publishes, 'every publish answered');
        assert.deepEqual(results.filter(Boolean).map(String).slice(0, 3), [], 'publishes sent before the close succeeded');
        assert.deepEqual(quitFailures, []);
        await eventually(() => late === 400, { what: 'an answer (success or error) to every publish sent while closing' });
      }
      assert.deepEqual(unhandled.map(String), []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
