// A consumer stopping gracefully (SIGTERM) drains: the message in hand finishes and is
// acknowledged, the ones that arrive meanwhile go back to the broker and to another member of the
// group. Without the drain, closing handed back a message whose work was still running, and two
// workers did it at once (the chaos run saw failed outcomes for operations the ERP had recorded).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { createLogger } from '../lib/log.js';
import { closeMqtt, connectMqtt, consume, subscribe, type MqttClient } from '../lib/mqtt.js';
import { eventually } from '../harness/process.js';
import { startBroker, type RunningBroker } from '../harness/broker.js';

const log = createLogger('drain-test', 'silent');
const FILTER = 'woodytoys/test/drain';

describe('consume().drain()', () => {
  let broker: RunningBroker;
  const clients: MqttClient[] = [];
  before(async () => {
    broker = await startBroker({ env: { BROKER_REDISPATCH_GRACE_MS: '100' } });
  });
  after(async () => {
    await Promise.all(clients.map((c) => closeMqtt(c, 500)));
    await broker?.stop();
  });

  const member = (id: string, handled: string[], gate?: Promise<void>) => {
    const client = connectMqtt({ url: broker.mqttUrl, clientId: id, log });
    const publisher = connectMqtt({ url: broker.mqttUrl, clientId: `${id}-pub`, clean: true, log });
    clients.push(client, publisher);
    const consumption = consume(client, {
      consumer: 'drain-test',
      publisher,
      source: '/test',
      log,
      routes: [
        {
          filter: FILTER,
          async handle(_topic, payload) {
            handled.push(`start ${payload.toString()}`);
            await gate;
            handled.push(`done ${payload.toString()}`);
          },
        },
      ],
    });
    subscribe(client, [`$share/drainers/${FILTER}`], log);
    return { client, consumption };
  };

  it('finishes the message in hand, acknowledges it, and hands the rest to another member', async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const first: string[] = [];
    const a = member('drain-a', first, gate);
    await eventually(() => a.client.connected, { what: 'member a' });
    await new Promise((r) => setTimeout(r, 300)); // SUBACK
    const producer = await mqtt.connectAsync(broker.mqttUrl, { clientId: 'drain-producer' });
    clients.push(producer);
    await producer.publishAsync(FILTER, 'm1', { qos: 1 });
    await eventually(() => first.includes('start m1'), { what: 'm1 in hand' });

    const drained = a.consumption.drain(10_000);
    await producer.publishAsync(FILTER, 'm2', { qos: 1 });
    setTimeout(open, 300);
    await drained;
    assert.deepEqual(first, ['start m1', 'done m1'], 'm1 finished; m2 was not started');
    await closeMqtt(a.client);

    const second: string[] = [];
    member('drain-b', second);
    await eventually(() => second.includes('done m2'), { timeoutMs: 15_000, what: 'm2 handed to member b' });
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(second, ['start m2', 'done m2'], 'm1 was acknowledged, so never delivered again');
  });
});
