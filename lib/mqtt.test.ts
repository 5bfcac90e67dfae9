// eventRoute on its own: the one way a consumer decodes an event or fails it to the dead letters.
// (consume() itself, with a real broker, is tested in test/consume-*.test.ts.)
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IPublishPacket } from 'mqtt';
import { createEvent, type CloudEvent } from './events.js';
import { pino } from 'pino';
import { PermanentFailure, connectMqtt, eventRoute } from './mqtt.js';
import { orderConfirmed, orderFailed } from './topics.js';

const packet = {} as IPublishPacket;
const confirmed = createEvent(orderConfirmed, { orderId: '0b7e6c1e-3f0a-4c8e-9d7b-2a5f4e1c9d30', erpReference: 'ERP-1' }, { source: '/test' });
const payload = (event: unknown) => Buffer.from(JSON.stringify(event));

describe('eventRoute', () => {
  it('routes on the event topic and hands an apply effect the typed event and the topic', () => {
    const seen: [CloudEvent<{ orderId: string; erpReference: string }>, string][] = [];
    const route = eventRoute(orderConfirmed, { apply: (event, topic) => void seen.push([event, topic]) });
    assert.equal(route.filter, orderConfirmed.topic);
    route.apply(orderConfirmed.topic, payload(confirmed), packet);
    assert.deepEqual(seen, [[confirmed, orderConfirmed.topic]]);
  });

  it('hands a handle effect the typed event and resolves with it', async () => {
    let reference = '';
    const route = eventRoute(orderConfirmed, { handle: async ({ data }) => void (reference = data.erpReference) });
    await route.handle(orderConfirmed.topic, payload(confirmed), packet);
    assert.equal(reference, 'ERP-1');
  });

  it('fails a payload that does not decode as a PermanentFailure with the reason, before the effect runs', async () => {
    let ran = false;
    const apply = eventRoute(orderConfirmed, { apply: () => void (ran = true) });
    const handle = eventRoute(orderConfirmed, { handle: async () => void (ran = true) });
    const cases: [Buffer, RegExp][] = [
      [Buffer.from('{"orderId":'), /^payload is not valid JSON$/],
      [payload({ ...confirmed, specversion: '0.3' }), /^not a CloudEvent: specversion/],
      [payload(createEvent(orderFailed, { orderId: confirmed.data.orderId, reason: 'no' }, { source: '/test' })), /^expected event type woodytoys\.order\.confirmed, got woodytoys\.order\.failed$/],
      [payload({ ...confirmed, data: { orderId: 'nope' } }), /^invalid woodytoys\.order\.confirmed data: /],
    ];
    for (const [bad, reason] of cases) {
      assert.throws(() => apply.apply(orderConfirmed.topic, bad, packet), (err) => err instanceof PermanentFailure && reason.test(err.reason));
      await assert.rejects(handle.handle(orderConfirmed.topic, bad, packet), (err) => err instanceof PermanentFailure && reason.test(err.reason));
    }
    assert.equal(ran, false);
  });
});

describe('connectMqtt', () => {
  // mqtt.js's own debug logging allocates on every call even when it prints nothing: it is kept
  // only when DEBUG could enable it, and then left to mqtt.js (DEBUG=mqttjs* works as documented).
  const logOf = (debug: string | undefined) => {
    const before = process.env.DEBUG;
    if (debug === undefined) delete process.env.DEBUG;
    else process.env.DEBUG = debug;
    try {
      // Nothing listens on port 1: the client only exists, and is ended at once.
      const client = connectMqtt({ url: 'mqtt://127.0.0.1:1', clientId: 'log-test', log: pino({ level: 'silent' }) });
      client.end(true);
      return client.options.log;
    } finally {
      if (before === undefined) delete process.env.DEBUG;
      else process.env.DEBUG = before;
    }
  };

  it('hands mqtt.js a no-op log while DEBUG is unset or empty, and its own debug logging when DEBUG is set', () => {
    const quiet = logOf(undefined);
    assert.equal(typeof quiet, 'function');
    assert.equal(quiet!.length, 0);
    assert.equal(logOf(''), quiet);
    assert.equal(logOf('mqttjs*'), undefined);
  });
});
