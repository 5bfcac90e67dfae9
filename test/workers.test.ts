// The worker process end to end against the real broker and ERP: stock movements and orders are
// recorded once each, outcomes are published, and refusals become failed outcomes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { decodeEvent } from '../lib/events.js';
import { stockMovementProcessed } from '../lib/topics.js';
import { eventually } from './support/process.js';
import { connectPublisher, erpStats, movementMessages, publishAll, startWorkerSystem, type WorkerSystem } from './support/workers.js';

describe('stock movements', () => {
  let system: WorkerSystem;
  before(async () => {
    system = await startWorkerSystem({ workers: 2, erpCapacityRu: 2000 });
  });
  after(async () => {
    await system?.stop();
  });

  it('records each movement once in the ERP and publishes its outcome', async () => {
    const watcher = await mqtt.connectAsync(system.broker.mqttUrl, { clientId: 'watcher', clean: true, protocolVersion: 4 });
    const outcomes = new Map<string, string>();
    watcher.on('message', (_topic, payload) => {
      const decoded = decodeEvent(stockMovementProcessed, payload);
      if (decoded.ok) outcomes.set(decoded.event.data.movementId, decoded.event.data.outcome);
    });
    await watcher.subscribeAsync(stockMovementProcessed.topic, { qos: 1 });
    const feeder = await connectPublisher(system.broker.mqttUrl);
    await publishAll(feeder, movementMessages(300, 'test'));
    await eventually(async () => (await erpStats(system.erpUrl)).records['stock-movement'] === 300, { what: '300 movements in the ERP', timeoutMs: 60_000 });
    await eventually(() => outcomes.size === 300, { what: '300 outcomes' });
    assert.ok([...outcomes.values()].every((o) => o === 'recorded'));
    const record = (await (await fetch(`${system.erpUrl}/erp/records/movement:test-7`)).json()) as { kind: string };
    assert.equal(record.kind, 'stock-movement');
    const stats = await erpStats(system.erpUrl);
    assert.equal(stats.accepted, 300);
    await Promise.all([feeder.endAsync(), watcher.endAsync()]);
  });
});
