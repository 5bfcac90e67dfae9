// Bounded before trust (broker/limits.ts): what a connection that has not logged in can cost our
// broker. Oversized packets are refused from their header, over TCP and WebSocket, without the
// broker's memory growing; a CONNECT that does not arrive in time, and connections past the
// per-address limits, are closed with a log line; well-behaved clients are unaffected.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import WebSocket from 'ws';
import { formatPasswordFile } from '../broker/password-hash.js';
import { sleep } from '../lib/shutdown.js';
import { closeMqtt } from '../lib/mqtt.js';
import { startBroker, type RunningBroker } from '../harness/broker.js';
import { RawClient, connectHeader, connectPacket } from './support/mqtt-raw.js';
import { eventually } from '../harness/process.js';
import { connectClient } from '../harness/mqtt.js';

/** The largest remaining length MQTT can announce: 256 MiB less one byte. */
const ANNOUNCED = 268_435_455;
const dir = mkdtempSync(join(tmpdir(), 'broker-limits-'));
const passwordFile = join(dir, 'passwd');
writeFileSync(passwordFile, formatPasswordFile({ viewer: 'viewer-secret' }));
const auth = { BROKER_ALLOW_ANONYMOUS: 'false', BROKER_PASSWORD_FILE: passwordFile };
const viewer = { username: 'viewer', password: 'viewer-secret', protocolVersion: 4 as const, reconnectPeriod: 0, connectTimeout: 5000 };

after(() => rmSync(dir, { recursive: true, force: true }));

/** The broker's resident memory, MB. */
const residentMb = (broker: RunningBroker) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${broker.process.pid}/status`, 'utf8'))![1]) / 1024;

const lines = (broker: RunningBroker) => broker.logs.map((l) => JSON.parse(l) as Record<string, unknown>);

/** Streams `send` chunks as fast as the socket takes them, until the broker closes it or `limit` bytes went out. */
async function stream(isClosed: () => boolean, send: (chunk: Buffer) => void, buffered: () => number, limit: number): Promise<number> {
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  let sent = 0;
  while (!isClosed() && sent < limit) {
    if (buffered() < 4 * chunk.length) {
      send(chunk);
      sent += chunk.length;
    } else {
      await sleep(1);
    }
  }
  return sent;
}

describe('an oversized CONNECT from a stranger', () => {
  let broker: RunningBroker;
  before(async () => {
    broker = await startBroker({ env: auth });
  });
  after(async () => {
    await broker?.stop();
  });

  test('four connections announcing and streaming 256 MiB are each closed at once, and the memory stays flat', async (t) => {
    // Settle first: what the broker holds after its own start is not what we measure.
    await sleep(500);
    const before = residentMb(broker);
    const results = await Promise.all(
      [1, 2, 3, 4].map(async () => {
        const c = await RawClient.open(broker.mqttUrl);
        const started = Date.now();
        c.send(connectHeader(ANNOUNCED));
        const sent = await stream(() => c.closed, (b) => c.send(b), () => c.socket.writableLength, ANNOUNCED);
        await c.closedAt;
        return { sent, seconds: (Date.now() - started) / 1000, answers: c.answers() };
      }),
    );
    const grown = residentMb(broker) - before;
    t.diagnostic(`closed after ${results.map((r) => `${r.seconds.toFixed(2)} s / ${(r.sent / 2 ** 20).toFixed(1)} MiB sent`).join(', ')}; resident memory ${before.toFixed(0)} MB → +${grown.toFixed(1)} MB`);
    for (const r of results) {
      assert.deepEqual(r.answers, [], 'no CONNACK: the CONNECT is never read');
      // Closed long before the body could have arrived: a generous bound, not a latency figure.
      assert.ok(r.sent < 64 * 2 ** 20, `the broker closed the connection after ${r.sent} bytes of ${ANNOUNCED}`);
    }
    assert.ok(grown < 20, `resident memory grew by ${grown.toFixed(1)} MB`);
    await eventually(() => lines(broker).some((l) => l.msg === 'connection closed: over a limit' && /268435455 bytes is over the limit of 1048576/.test(String(l.reason))), {
      what: 'the log line',
    });
  });

  test('the same over WebSocket, and a WebSocket message larger than any packet', async () => {
    const open = () =>
      new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(broker.wsUrl, 'mqtt');
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      });
    const header = await open();
    header.send(connectHeader(ANNOUNCED));
    const sent = await stream(() => header.readyState !== WebSocket.OPEN, (b) => header.send(b), () => header.bufferedAmount, 64 * 2 ** 20);
    await eventually(() => header.readyState === WebSocket.CLOSED, { what: 'the WebSocket closed' });
    assert.ok(sent < 64 * 2 ** 20, `closed after ${sent} bytes`);

    const huge = await open();
    const closed = new Promise<number>((resolve) => huge.once('close', (code) => resolve(code)));
    huge.send(Buffer.alloc(8 * 2 ** 20));
    assert.equal(await closed, 1009, 'message too big');

    // A well-behaved client over WebSocket still connects. (Closed with a bound: mqtt.js's end()
    // waits for its stream's close, and once a CI run waited forever here.)
    const client = await connectClient(broker.wsUrl, { ...viewer, clientId: 'viewer-ws' });
    assert.ok(client.connected);
    await closeMqtt(client, 2000);
  });
});

describe('a deadline for the CONNECT and connections per address', () => {
  const TIMEOUT_MS = 500;
  let broker: RunningBroker;
  before(async () => {
    broker = await startBroker({
      env: { ...auth, BROKER_CONNECT_TIMEOUT_MS: String(TIMEOUT_MS), BROKER_MAX_CONNECTING_PER_ADDRESS: '3', BROKER_MAX_CONNECTIONS_PER_ADDRESS: '6' },
    });
  });
  after(async () => {
    await broker?.stop();
  });

  test('a connection that sends nothing, or its CONNECT a byte at a time, is closed at the deadline', async () => {
    const silent = await RawClient.open(broker.mqttUrl);
    const slow = await RawClient.open(broker.mqttUrl);
    const packet = connectPacket({ clientId: 'viewer-slow', username: 'viewer', password: 'viewer-secret' });
    let o = 0;
    // Two bytes per deadline's worth of time per packet byte: the whole CONNECT would take twice the deadline.
    const drip = setInterval(() => slow.send(packet.subarray(o, ++o)), Math.ceil((2 * TIMEOUT_MS) / packet.length));
    try {
      await Promise.all([silent.closedAt, slow.closedAt]);
    } finally {
      clearInterval(drip);
    }
    assert.deepEqual([silent.answers(), slow.answers()], [[], []]);
    assert.ok(o < packet.length, `the CONNECT never completed (${o} of ${packet.length} bytes)`);
    await eventually(() => lines(broker).filter((l) => String(l.reason).startsWith(`no CONNECT within ${TIMEOUT_MS} ms`)).length >= 1, { what: 'the log line' });
  });

  test('past the connections still before their CONNECT, or all connections, of one address: closed at once', async () => {
    const waiting = await Promise.all([1, 2, 3].map(() => RawClient.open(broker.mqttUrl)));
    const fourth = await RawClient.open(broker.mqttUrl);
    await fourth.closedAt;
    assert.ok(waiting.every((c) => !c.closed), 'the first three are still waiting');
    await eventually(() => lines(broker).some((l) => /3 connections from this address still before their CONNECT/.test(String(l.reason))), { what: 'the log line' });
    for (const c of waiting) c.close();

    // Logged-in connections count against the other limit; once one leaves, another may come. (The
    // broker learns of a close a moment after the client: until then a connection may be refused.)
    const connected = (clientId: string) =>
      eventually(() => connectClient(broker.mqttUrl, { ...viewer, clientId }).catch(() => undefined), { what: `${clientId} connected` });
    const clients = [];
    for (let i = 1; i <= 6; i++) clients.push(await connected(`viewer-${i}`));
    const seventh = await RawClient.open(broker.mqttUrl);
    await seventh.closedAt;
    await eventually(() => lines(broker).some((l) => /6 connections from this address already/.test(String(l.reason))), { what: 'the log line' });
    await closeMqtt(clients.pop()!, 2000);
    clients.push(await connected('viewer-again'));
    await Promise.all(clients.map((c) => closeMqtt(c, 2000)));
  });
});

describe('where the listeners bind', () => {
  // 127.0.0.2 stands in for a container's 0.0.0.0 while staying on loopback: on Linux every
  // 127.x.y.z reaches the machine, but a socket bound to 127.0.0.1 is not reached through 127.0.0.2.
  const reachable = (host: string, port: number) =>
    new Promise<boolean>((resolve) => {
      const socket = connect(port, host, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });

  test('the MQTT and WebSocket listeners follow HTTP_HOST unless MQTT_HOST is set', async () => {
    // In compose HTTP_HOST is 0.0.0.0 and MQTT_HOST unset: bound to 127.0.0.1, the gateway's
    // connections to broker:1883 would have been refused.
    for (const [env, host] of [
      [{ HTTP_HOST: '127.0.0.2' }, '127.0.0.2'],
      [{ HTTP_HOST: '127.0.0.2', MQTT_HOST: '127.0.0.1' }, '127.0.0.1'],
    ] as const) {
      const broker = await startBroker({ env });
      try {
        const mqttPort = Number(new URL(broker.mqttUrl).port);
        const wsPort = Number(new URL(broker.wsUrl).port);
        assert.equal(new URL(broker.mqttUrl).hostname, host);
        const other = host === '127.0.0.1' ? '127.0.0.2' : '127.0.0.1';
        assert.deepEqual(
          [await reachable(host, mqttPort), await reachable(host, wsPort), await reachable(other, mqttPort), await reachable(other, wsPort)],
          [true, true, false, false],
          `${JSON.stringify(env)}: MQTT and WebSocket on ${host} only`,
        );
        const client = await connectClient(broker.mqttUrl, { clientId: 'bind-check', clean: true, reconnectPeriod: 0 });
        assert.ok(client.connected);
        await closeMqtt(client, 2000);
      } finally {
        await broker.stop();
      }
    }
  });
});
