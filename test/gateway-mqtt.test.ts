// MQTT over TCP through the gateway: real nginx running the repository's nginx.conf with its
// `stream` block (GATEWAY_MQTT_PORT set) in front of a real broker node. What compose relies on:
// every process reaches the broker nodes at gateway:1883, nginx passing the MQTT bytes through,
// limiting connections per client address, and logging each session.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { rmSync } from 'node:fs';
import { startGateway, type RunningGateway } from '../gateway/nginx.js';
import { localTemplate, streamModule } from '../gateway/render.js';
import { startBroker, type RunningBroker } from '../harness/broker.js';
import { gatewayDir, mqttSessions, roundTrip } from '../harness/gateway.js';
import { eventually, freePort } from '../harness/process.js';
import { connectPacket, RawClient } from './support/mqtt-raw.js';
import { requireNginxStream } from './support/programs.js';

const skip = requireNginxStream();
// Other loopback source addresses than 127.0.0.1 work out of the box on Linux only.
const otherClients = process.platform === 'linux' ? false : 'needs the 127.0.0.0/8 loopback range (Linux)';
const CONN_PER_IP = 3;

describe('the mqtt-tcp block of nginx.conf, as local runs render it (no nginx run)', () => {
  const template = '# a\n# @optional mqtt-tcp: x\nstream {\n}\n# @end mqtt-tcp\nhttp {}\n';

  test('without GATEWAY_MQTT_PORT the block is dropped, everything else kept', () => {
    assert.equal(localTemplate(template, { mqttTcp: false }), '# a\nhttp {}\n');
  });

  test('the stream module: built in, a dynamic module to load, or missing with the install command', () => {
    assert.deepEqual(streamModule('configure arguments: --with-stream --with-stream_ssl_module'), {});
    assert.deepEqual(streamModule('configure arguments: --with-stream=dynamic --modules-path=/nowhere'), { missing: 'nginx without its stream module (apt-get install -y libnginx-mod-stream)' });
    assert.ok('missing' in streamModule('configure arguments: --with-http_ssl_module'));
  });
});

describe('MQTT over TCP through the gateway (real nginx, nginx.conf stream block)', { skip }, () => {
  let broker: RunningBroker;
  let gateway: RunningGateway;
  let dir: string;
  let mqttUrl: string;

  before(async () => {
    dir = gatewayDir('gateway-mqtt-');
    broker = await startBroker();
    const mqttPort = await freePort();
    gateway = await startGateway({
      GATEWAY_RUNTIME_DIR: dir,
      GATEWAY_PORT: String(await freePort()),
      GATEWAY_MQTT_PORT: String(mqttPort),
      GATEWAY_MQTT_CONN_PER_IP: String(CONN_PER_IP),
      GATEWAY_WORKER_PROCESSES: '1',
      MQTT_TCP_UPSTREAM: new URL(broker.mqttUrl).host,
    });
    mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
  });

  after(async () => {
    await gateway?.stop();
    await broker?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const sessions = () => mqttSessions(gateway.accessLog);

  test('a client connects, subscribes and gets its QoS 1 publish back through the gateway; the session is logged with the broker node it went to', async () => {
    const topic = 'woodytoys/test/gateway-tcp';
    assert.deepEqual(await roundTrip(mqttUrl, { clientId: `gateway-mqtt-${process.pid}`, topic, text: 'over TCP through nginx' }), [topic, 'over TCP through nginx']);
    // nginx writes a stream session's line when it ends.
    const session = await eventually(() => sessions().find((s) => s.remote_addr === '127.0.0.1' && s.bytes_in > 0), { what: 'the MQTT session in the access log' });
    assert.equal(session.status, 200);
    assert.equal(session.upstream, new URL(broker.mqttUrl).host);
  });

  test('a client address holds at most GATEWAY_MQTT_CONN_PER_IP connections; another address is not affected', { skip: otherClients }, async () => {
    const held: RawClient[] = [];
    const connected = async (from: string) => {
      const c = await RawClient.open(mqttUrl, { localAddress: from });
      c.send(connectPacket({ clientId: `limit-${from}-${held.length}` }));
      await eventually(() => c.closed || c.answers().some((a) => a.type === 'connack') || undefined, { what: `an answer to a CONNECT from ${from}` });
      return c;
    };
    try {
      for (let i = 0; i < CONN_PER_IP; i++) {
        const c = await connected('127.0.0.31');
        held.push(c);
        assert.deepEqual(c.answers()[0], { type: 'connack', returnCode: 0 }, `connection ${i + 1} is allowed`);
      }
      const refused = await connected('127.0.0.31');
      held.push(refused);
      await refused.closedAt;
      assert.deepEqual(refused.answers(), [], 'one more is closed by nginx before the broker answers');
      const other = await connected('127.0.0.32');
      held.push(other);
      assert.deepEqual(other.answers()[0], { type: 'connack', returnCode: 0 });
      await eventually(() => sessions().some((s) => s.remote_addr === '127.0.0.31' && s.status === 503) || undefined, { what: 'the refused session logged as 503' });
    } finally {
      for (const c of held) c.close();
    }
  });
});
