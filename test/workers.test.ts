// The worker process end to end against the real broker and ERP: stock movements and orders are
// recorded once each, outcomes are published, and refusals become failed outcomes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { decodeEvent } from '../lib/events.js';
import { closeMqtt } from '../lib/mqtt.js';
import { deadLetter, deadLetterTopic, stockMovementProcessed } from '../lib/topics.js';
import { scrape } from '../harness/metrics.js';
import { eventually, freePort, startProcess } from '../harness/process.js';
import { connectPublisher, erpStats, movementMessages, publishAll, startWorkerSystem, type WorkerSystem } from '../harness/workers.js';

describe('stock movements', () => {
  let system: WorkerSystem;
  before(async () => {
    // Three ERP connections each (12 places): about ten operations leave a worker per pacing slice.
    system = await startWorkerSystem({ workers: 2, erpCapacityRu: 2000, workerEnv: { WORKER_ERP_CONNECTIONS: '3' } });
  });
  after(async () => {
    await system?.stop();
  });

  it('records each movement once in the ERP and publishes its outcome', async (t) => {
    const watcher = await mqtt.connectAsync(system.broker.mqttUrl, { clientId: 'watcher', clean: true, protocolVersion: 4 });
    // Closed however the test ends: an mqtt.js client left open keeps reconnecting, and its test
    // file's process would never exit.
    t.after(() => closeMqtt(watcher));
    const outcomes = new Map<string, string>();
    watcher.on('message', (_topic, payload) => {
      const decoded = decodeEvent(stockMovementProcessed, payload);
      if (decoded.ok) outcomes.set(decoded.event.data.movementId, decoded.event.data.outcome);
    });
    await watcher.subscribeAsync(stockMovementProcessed.topic, { qos: 1 });
    const feeder = await connectPublisher(system.broker.mqttUrl);
    t.after(() => closeMqtt(feeder));
    await publishAll(feeder, movementMessages(300, 'test'));
    await eventually(async () => (await erpStats(system.erpUrl)).records['stock-movement'] === 300, { what: '300 movements in the ERP', timeoutMs: 60_000 });
    await eventually(() => outcomes.size === 300, { what: '300 outcomes' });
    assert.ok([...outcomes.values()].every((o) => o === 'recorded'));
    const record = (await (await fetch(`${system.erpUrl}/erp/records/movement:test-7`)).json()) as { kind: string };
    assert.equal(record.kind, 'stock-movement');
    const stats = await erpStats(system.erpUrl);
    t.diagnostic(`ERP: ${stats.accepted} accepted, ${stats.rejected} answered 429, ${stats.duplicates} duplicates`);
    assert.equal(stats.accepted, 300);
    // 300 records of 10 RU at 2,000 RU/s: paced, they take about 1.5 s and are almost never refused
    // (0 in a quiet run). Unpaced, the first second alone would refuse 100 of them. The bound leaves
    // room for a starved machine, where calls sent in one of the ERP's one-second windows reach it
    // in the next (a CI run once saw 17); the paced rate itself is measured by `npm run demo:rate-limit`.
    assert.ok(stats.rejected <= 45, `${stats.rejected} answers 429`);
    const workerUrl = String(system.workers[0]!.logs.find((l) => l.msg === 'worker listening')!.http);
    const text = await (await fetch(`${workerUrl}/metrics`)).text();
    // The ERP sees an operation again only when the worker sent it again without an answer to the
    // first call (a timeout on a loaded machine); a 429 is an answer, and is never a duplicate.
    const unanswered = [...text.matchAll(/^worker_erp_calls_total\{[^}]*result="unavailable"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    assert.ok(stats.duplicates <= unanswered, `${stats.duplicates} duplicates at the ERP, but only ${unanswered} calls went unanswered`);
    const connections = Number(text.match(/^worker_erp_connections(?:\{[^}]*\})? (\d+)/m)?.[1]);
    assert.ok(connections >= 1 && connections <= 3, `${connections} connections to the ERP, WORKER_ERP_CONNECTIONS=3`);
    for (const name of ['worker_lease_partitions', 'worker_pacing_rate_ru', 'worker_backlog_messages', 'worker_erp_throttled_total', 'worker_erp_retries_total', 'worker_dead_letters_total']) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exported`);
    }
  });
});

describe('an ERP that keeps failing', () => {
  let system: WorkerSystem;
  before(async () => {
    system = await startWorkerSystem({ workers: 1, erpCapacityRu: 2000, erpEnv: { ERP_ERROR_RATE: '1' }, workerEnv: { WORKER_MAX_ATTEMPTS: '2' } });
  });
  after(async () => {
    await system?.stop();
  });

  it('parks the movement (transient is not final) and dead-letters it with the reason after the bounded attempts', async () => {
    const watcher = await mqtt.connectAsync(system.broker.mqttUrl, { clientId: 'watcher-dl', clean: true, protocolVersion: 4 });
    const seen: { topic: string; payload: Buffer }[] = [];
    watcher.on('message', (topic, payload) => seen.push({ topic, payload }));
    await watcher.subscribeAsync([stockMovementProcessed.topic, deadLetterTopic('stock-workers')], { qos: 1 });
    const feeder = await connectPublisher(system.broker.mqttUrl);
    await publishAll(feeder, movementMessages(1, 'doomed'));
    const dead = await eventually(() => seen.find((m) => m.topic === deadLetterTopic('stock-workers')), { what: 'a dead letter' });
    const letter = decodeEvent(deadLetter, dead.payload);
    assert.ok(letter.ok);
    assert.equal(letter.event.data.attempts, 2);
    assert.match(letter.event.data.reason, /gave up after 2 attempts: ERP answered 500/);
    const outcome = seen.find((m) => m.topic === stockMovementProcessed.topic);
    assert.ok(outcome, 'the parked outcome is published before the dead letter');
    const decoded = decodeEvent(stockMovementProcessed, outcome.payload);
    assert.ok(decoded.ok && decoded.event.data.outcome === 'parked', outcome.payload.toString());
    assert.match(decoded.event.data.reason ?? '', /gave up after 2 attempts/);
    await Promise.all([feeder.endAsync(), watcher.endAsync()]);
  });
});

describe('a worker that cannot consume', () => {
  let system: WorkerSystem;
  before(async () => {
    system = await startWorkerSystem({ workers: 1, erpCapacityRu: 200, workerEnv: { LEASE_TICK_MS: '20' } });
  });
  after(async () => {
    await system?.stop();
  });

  it('claims no capacity while its broker connection is down, however large the backlog it reads', async (t) => {
    const metricsOf = (url: string) => scrape(`${url}/metrics`);
    const consuming = String(system.workers[0]!.logs.find((l) => l.msg === 'worker listening')!.http);
    // 100 s of work at the ERP's 200 RU/s, however long the second worker takes to start on a busy
    // machine: the consuming worker wants every partition throughout (demand covers the backlog in a second).
    const feeder = await connectPublisher(system.broker.mqttUrl);
    t.after(() => closeMqtt(feeder));
    await publishAll(feeder, movementMessages(2000, 'claim'));
    await eventually(async () => (await metricsOf(consuming))('worker_lease_partitions') === 20, { what: 'the consuming worker holding all 20 partitions' });
    // The second worker reads the same backlog from the broker's metrics and shares the lease file,
    // but its MQTT address answers nobody.
    const stranded = await system.startWorker(2, { MQTT_URL: `mqtt://127.0.0.1:${await freePort()}` }, (l) => l.msg === 'worker listening');
    const strandedUrl = String(stranded.logs.find((l) => l.msg === 'worker listening')!.http);
    await eventually(async () => (await metricsOf(strandedUrl))('worker_backlog_messages', 'workflow="movements"')! > 0, { what: 'the stranded worker reading the backlog' });
    // Fifty of its lease ticks: a worker that claimed capacity before it could consume would have
    // announced itself at the first, and the consuming one would then give up half its partitions.
    for (const until = Date.now() + 1000; Date.now() < until; ) {
      const [mine, theirs] = await Promise.all([metricsOf(strandedUrl), metricsOf(consuming)]);
      assert.equal(mine('worker_lease_partitions'), 0, 'the stranded worker leases nothing');
      assert.equal(theirs('worker_lease_members'), 1, 'the consuming worker is the only one wanting capacity');
      assert.equal(theirs('worker_lease_partitions'), 20, 'and keeps every partition');
    }
  });
});

describe('the worker process’s settings', () => {
  it('refuses WORKER_ERP_CONCURRENCY outside 1–1024 and WORKER_ERP_CONNECTIONS outside 1–256, or not whole numbers, at start and names them', async () => {
    const cases: Array<[string, string[]]> = [
      ['WORKER_ERP_CONCURRENCY', ['0', '1025', '2.5', 'many']],
      ['WORKER_ERP_CONNECTIONS', ['0', '257', '1.5', 'few']],
    ];
    for (const [name, values] of cases) {
      for (const bad of values) {
        await assert.rejects(
          startProcess({ name: 'worker', entry: 'workers/main.ts', env: { [name]: bad } }),
          new RegExp(`exited with 78[\\s\\S]*${name}`),
          `${name}=${bad}`,
        );
      }
    }
  });
});
