// The adapter against the Aedes that is installed, in one process with a real mqtt.js client on
// loopback: the private members it reaches for are there (an Aedes upgrade that moves them fails
// here rather than quietly), and the group queue's own path works end to end: a PUBLISH written
// with writePackets and an identifier from nextPacketId arrives, and its PUBACK is taken before
// Aedes sees it; and a publish reaches `published` as the object authorizePublish was given.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as connectTcp, createServer, type Server } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { Aedes, type Client } from 'aedes';
import MemoryPersistence from 'aedes-persistence/asyncPersistence.js';
import mqtt, { type MqttClient } from 'mqtt';
import { Presence, countConnected, handleTcp, missingInternals, nextPacketId, onParsed, takePackets, whenRouted, writePackets } from './aedes-adapter.js';
import { encodePublish, stampPublish } from './publish-packet.js';
import { eventually } from '../harness/process.js';
import { connectClient } from '../harness/mqtt.js';
import { RawClient, connectPacket, subscribePacket } from '../test/support/mqtt-raw.js';

describe('the Aedes adapter, against the installed Aedes', () => {
  let broker: Aedes;
  let server: Server;
  let url: string;
  const taken: Array<{ clientId: string; messageId: number }> = [];
  /** What happened to a raw client's packets, in order: taken by the group queue, or parsed by mqtt-packet. */
  const order: string[] = [];
  /** Identifiers the test's own deliveries hold, as the group queue's in-flight map would. */
  const ours = new Set<number>();
  const ready = new Map<string, Client>();
  /** Clients the test's stand-in for limits.ts has condemned. */
  const condemned = new Set<string>();
  let acksSeenByAedes = 0;
  const authorized = new Set<object>();
  const routed: object[] = [];
  /** Aedes's own default store, kept at hand so a case can slow one of its steps down. */
  const persistence = new MemoryPersistence();
  /** Who has a connection, as the broker's connect hook tells it; and each admitted connection, by client id. */
  const gone: string[] = [];
  const presence = new Presence((clientId) => gone.push(clientId));
  const conns = new Map<string, Array<Client['conn']>>();
  /** Clients connected now, as the broker's gauge counts them. */
  let connected: () => number;

  before(async () => {
    broker = await Aedes.createBroker({
      persistence,
      preConnect(client, packet, callback) {
        presence.arrive(packet.clientId, client.conn);
        conns.set(packet.clientId, [...(conns.get(packet.clientId) ?? []), client.conn]);
        callback(null, true);
      },
      authorizePublish(_client, packet, done) {
        authorized.add(packet);
        done(null);
      },
    });
    whenRouted(broker, (packet) => routed.push(packet));
    connected = countConnected(broker);
    takePackets(broker, {
      puback: (client, messageId) => {
        if (!ours.delete(messageId)) return false;
        taken.push({ clientId: client.id, messageId });
        order.push(`taken ${messageId}`);
        return true;
      },
      condemned: (client) => condemned.has(client.id),
      // Publishes to woodytoys/taken/… are this test's own; their PUBACK is written at once.
      publish: (client, packet, done) => {
        if (!packet.topic.startsWith('woodytoys/taken/')) {
          order.push(`left publish ${packet.topic}`);
          return false;
        }
        order.push(`taken publish ${packet.topic} qos ${packet.qos}${packet.messageId === undefined ? '' : ` id ${packet.messageId}`}${packet.dup ? ' dup' : ''}${packet.retain ? ' retained' : ''}: ${packet.payload.toString()}`);
        if (packet.qos === 1) writePackets(client, Buffer.from([0x40, 0x02, packet.messageId! >> 8, packet.messageId! & 0xff]));
        done();
        return true;
      },
    });
    broker.on('clientReady', (client) => ready.set(client.id, client));
    broker.on('ack', (packet) => {
      if (packet && 'messageId' in packet) acksSeenByAedes++;
    });
    server = createServer((socket) => handleTcp(broker, socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(async () => {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const connect = async (clientId: string) => {
    const client = await connectClient(url, { clientId, protocolVersion: 4, reconnectPeriod: 0, keepalive: 30 });
    const aedesClient = ready.get(clientId);
    assert.ok(aedesClient, 'Aedes reported the client ready before its CONNACK');
    return { client, aedesClient };
  };

  /**
   * Holds `id`'s next CONNECT at the step where Aedes stores its will: after its session's
   * subscriptions are restored, before it is registered and gets its CONNACK.
   */
  const holdAtWill = (id: string) => {
    const delWill = persistence.delWill.bind(persistence);
    let reached!: () => void;
    const atWill = new Promise<void>((resolve) => (reached = resolve));
    let letGo!: () => void;
    const willStep = new Promise<void>((resolve) => (letGo = resolve));
    persistence.delWill = async (client) => {
      if (client.id === id) {
        reached();
        await willStep;
      }
      return delWill(client);
    };
    return {
      atWill,
      release() {
        persistence.delWill = delWill;
        letGo();
      },
    };
  };

  /** A client speaking MQTT bytes itself on a raw socket, connected (CONNACK received); `received` is all it got. */
  const connectRaw = async (clientId: string) => {
    const socket = connectTcp(Number(new URL(url).port), '127.0.0.1');
    const raw = { socket, received: Buffer.alloc(0), got: (bytes: number[]) => raw.received.includes(Buffer.from(bytes)) };
    socket.on('data', (d: Buffer) => (raw.received = Buffer.concat([raw.received, d])));
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 30 }));
    await eventually(() => raw.got([0x20, 0x02, 0x00, 0x00]), { what: 'the CONNACK', intervalMs: 10 });
    return raw;
  };

  /**
   * A raw client, connected, whose packets `order` records from here on: as mqtt-packet parses them
   * (`parsed <cmd>`, with the packet identifier when `withIds`), beside what the takers record.
   */
  const watchedRaw = async (clientId: string, withIds = false) => {
    const raw = await connectRaw(clientId);
    const aedesClient = ready.get(clientId)!;
    order.length = 0;
    onParsed(aedesClient, (packet) => order.push(`parsed ${packet.cmd}${withIds && packet.messageId !== undefined ? ` ${packet.messageId}` : ''}`));
    return { raw, socket: raw.socket, aedesClient };
  };

  it('finds every private member it relies on', async () => {
    const { client, aedesClient } = await connect('adapter-internals');
    try {
      assert.deepEqual(missingInternals(aedesClient), []);
    } finally {
      await client.endAsync(true);
    }
  });

  it('sends its own PUBLISH packets and takes their PUBACKs ahead of Aedes', async () => {
    const { client, aedesClient }: { client: MqttClient; aedesClient: Client } = await connect('adapter-deliveries');
    try {
      const received: Array<{ topic: string; payload: string; messageId: number | undefined }> = [];
      const arrived = new Promise<void>((resolve) =>
        client.on('message', (topic, payload, packet) => {
          received.push({ topic, payload: payload.toString(), messageId: packet.messageId });
          if (received.length === 2) resolve();
        }),
      );
      const stored = [encodePublish('woodytoys/a', Buffer.from('one'), 1), encodePublish('woodytoys/b', Buffer.from('two'), 1)];
      const out = Buffer.allocUnsafe(stored[0]!.length + stored[1]!.length);
      let at = 0;
      const ids: number[] = [];
      for (const packet of stored) {
        const id = nextPacketId(aedesClient, ours);
        ours.add(id);
        ids.push(id);
        at = stampPublish(out, at, packet, id, false);
      }
      assert.notEqual(ids[0], ids[1]);
      writePackets(aedesClient, out);
      await arrived;
      assert.deepEqual(received, [
        { topic: 'woodytoys/a', payload: 'one', messageId: ids[0] },
        { topic: 'woodytoys/b', payload: 'two', messageId: ids[1] },
      ]);
      // mqtt.js acknowledges after its handler; the PUBACKs come back on the same connection.
      await eventually(() => taken.length >= 2, { what: 'both PUBACKs taken', intervalMs: 10 });
      assert.deepEqual(taken, ids.map((messageId) => ({ clientId: 'adapter-deliveries', messageId })));
      assert.equal(ours.size, 0);
      assert.equal(acksSeenByAedes, 2, "taken acknowledgements still raise Aedes's 'ack' event (metrics count them)");
      // Aedes's own next delivery draws from the same counter, past the identifiers taken above.
      const next = new Promise<number | undefined>((resolve) => client.once('message', (_t, _p, packet) => resolve(packet.messageId)));
      await client.subscribeAsync('woodytoys/c', { qos: 1 });
      broker.publish({ cmd: 'publish', topic: 'woodytoys/c', payload: Buffer.from('three'), qos: 1, retain: false, dup: false }, () => {});
      const aedesId = await next;
      assert.ok(aedesId !== undefined && !ids.includes(aedesId), `Aedes used identifier ${aedesId}, not one of ${ids}`);
    } finally {
      await client.endAsync(true);
    }
  });

  it('takes PUBACKs before mqtt-packet parses them, in the order the packets came', async () => {
    const { raw, socket, aedesClient } = await watchedRaw('adapter-raw', true);
    try {
      const ids = [1, 2, 3].map(() => {
        const id = nextPacketId(aedesClient, ours);
        ours.add(id);
        return id;
      });
      const [a, b, c] = ids as [number, number, number];
      const puback = (id: number) => Buffer.from([0x40, 0x02, id >> 8, id & 0xff]);
      // An identifier of 16 bits that is not one of ours (Aedes's counter starts at a random one).
      const notOurs = ((a + 1000) % 65535) + 1;
      // One chunk: ours, a PINGREQ, one the group queue does not claim, ours, half of ours.
      socket.write(Buffer.concat([puback(a), Buffer.from([0xc0, 0x00]), puback(notOurs), puback(b), puback(c).subarray(0, 2)]));
      await eventually(() => order.includes(`taken ${b}`) && raw.got([0xd0, 0x00]), { what: 'the first chunk handled', intervalMs: 10 });
      // The rest of the cut PUBACK: the parser completes it, and it is still taken.
      socket.write(puback(c).subarray(2));
      await eventually(() => order.includes(`taken ${c}`), { what: 'the cut PUBACK taken', intervalMs: 10 });
      assert.deepEqual(order, [`taken ${a}`, 'parsed pingreq', `parsed puback ${notOurs}`, `taken ${b}`, `taken ${c}`, `parsed puback ${c}`]);
      assert.equal(ours.size, 0);
    } finally {
      socket.destroy();
    }
  });

  it('takes PUBLISH packets before mqtt-packet parses them, in the order the packets came', async () => {
    const { raw, socket, aedesClient } = await watchedRaw('adapter-raw-publish');
    try {
      const publish = (topic: string, payload: string, qos: 0 | 1, messageId?: number, flags: { dup?: boolean; retain?: boolean } = {}) =>
        mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, ...(messageId === undefined ? {} : { messageId }), dup: flags.dup ?? false, retain: flags.retain ?? false });
      const cut = publish('woodytoys/taken/cut', 'split over two writes', 1, 7);
      // One chunk: taken (QoS 1, then a duplicate), a PINGREQ, one the taker leaves (Aedes's), QoS 0
      // taken, a retained one (the parser's; the taker still gets it, parsed), half of one.
      socket.write(
        Buffer.concat([
          publish('woodytoys/taken/a', 'één', 1, 1),
          publish('woodytoys/taken/a', 'again', 1, 2, { dup: true }),
          Buffer.from([0xc0, 0x00]),
          publish('woodytoys/aedes', 'for Aedes', 1, 3),
          publish('woodytoys/taken/b', 'at most once', 0),
          publish('woodytoys/taken/c', 'kept', 1, 4, { retain: true }),
          cut.subarray(0, 9),
        ]),
      );
      await eventually(() => order.includes('taken publish woodytoys/taken/b qos 0: at most once') && raw.got([0x40, 0x02, 0x00, 0x04]), { what: 'the first chunk handled', intervalMs: 10 });
      socket.write(cut.subarray(9));
      await eventually(() => raw.got([0x40, 0x02, 0x00, 0x07]), { what: 'the cut PUBLISH acknowledged', intervalMs: 10 });
      assert.deepEqual(order, [
        'taken publish woodytoys/taken/a qos 1 id 1: één',
        'taken publish woodytoys/taken/a qos 1 id 2 dup: again',
        'parsed pingreq',
        // Left by the taker on the raw bytes, then parsed and Aedes's (not offered to the taker again).
        'left publish woodytoys/aedes',
        'parsed publish',
        'taken publish woodytoys/taken/b qos 0: at most once',
        'taken publish woodytoys/taken/c qos 1 id 4 retained: kept',
        'parsed publish',
        'taken publish woodytoys/taken/cut qos 1 id 7: split over two writes',
        'parsed publish',
      ]);
      // Aedes acknowledged the one it was left (identifier 3), and the connection is still open.
      await eventually(() => raw.got([0x40, 0x02, 0x00, 0x03]), { what: "Aedes's PUBACK", intervalMs: 10 });
      assert.ok(!socket.destroyed && aedesClient.connected);
    } finally {
      socket.destroy();
    }
  });

  it('leaves a PUBLISH without room for its packet identifier to mqtt-packet (limits.ts refuses it in the broker)', async () => {
    const { raw } = await watchedRaw('adapter-raw-bad-publish');
    try {
      // QoS 1, remaining length 2 + 17: the topic, and no room for the packet identifier.
      const topic = 'woodytoys/taken/x';
      raw.socket.write(Buffer.concat([Buffer.from([0x32, 2 + topic.length, 0, topic.length]), Buffer.from(topic)]));
      await eventually(() => order.includes('parsed publish') || raw.socket.destroyed, { what: 'the packet handled', intervalMs: 10 });
      assert.ok(order.includes('parsed publish'), `read by mqtt-packet, not from the raw bytes: ${order.join('; ')}`);
    } finally {
      raw.socket.destroy();
    }
  });

  it('takes nothing from a connection the limits condemned, neither on the raw bytes nor parsed', async () => {
    const { raw, aedesClient } = await watchedRaw('adapter-condemned');
    try {
      const id = nextPacketId(aedesClient, ours);
      ours.add(id);
      condemned.add('adapter-condemned');
      // Aedes's own PUBACK handling (in the broker it reaches the group queue too, through claimAck).
      const clear = persistence.outgoingClearMessageId.bind(persistence);
      persistence.outgoingClearMessageId = (client, packet) => {
        order.push(`aedes puback ${packet.messageId}`);
        return clear(client, packet);
      };
      raw.socket.write(
        Buffer.concat([
          Buffer.from([0x40, 0x02, id >> 8, id & 0xff]),
          mqttPacket.generate({ cmd: 'publish', topic: 'woodytoys/taken/c', payload: Buffer.from('x'), qos: 1, messageId: 9, dup: false, retain: false }),
        ]),
      );
      await eventually(() => order.filter((o) => o.startsWith('parsed')).length === 2, { what: 'both packets parsed', intervalMs: 10 });
      assert.deepEqual(order, ['parsed puback', 'parsed publish']);
      assert.ok(ours.has(id), 'the delivery is still unacknowledged');
      ours.delete(id);
    } finally {
      persistence.outgoingClearMessageId = MemoryPersistence.prototype.outgoingClearMessageId;
      condemned.delete('adapter-condemned');
      raw.socket.destroy();
    }
  });

  it('takes no PUBACK that follows a packet Aedes closed the connection for', async () => {
    const raw = await connectRaw('adapter-dropped');
    const { socket } = raw;
    const closed = new Promise((resolve) => socket.once('close', resolve));
    try {
      // A subscription makes Aedes's close take a while: the client is closed, not yet disconnected.
      socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'woodytoys/dropped', qos: 1 }] }));
      await eventually(() => raw.got([0x90, 0x03, 0x00, 0x01, 0x01]), { what: 'the SUBACK', intervalMs: 10 });
      const id = nextPacketId(ready.get('adapter-dropped')!, ours);
      ours.add(id);
      // An invalid filter closes the connection; the PUBACK after it in the same chunk must not count.
      const unsubscribe = mqttPacket.generate({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['woodytoys/#/x'] });
      socket.write(Buffer.concat([unsubscribe, Buffer.from([0x40, 0x02, id >> 8, id & 0xff])]));
      await closed;
      assert.ok(ours.has(id), 'the delivery is still unacknowledged (it goes to another member)');
      assert.ok(!taken.some((t) => t.clientId === 'adapter-dropped'));
      ours.delete(id);
    } finally {
      socket.destroy();
    }
  });

  it('sends nothing to a resuming session before its CONNACK, not even a message published while it resumes', async () => {
    // Aedes restores the session's subscriptions, then stores its will, then writes the CONNACK; a
    // publish in between is the case (on several nodes each step is a Redis round trip). Storing
    // the will waits here until that publish has been handed to the connection's subscription.
    const id = 'adapter-resume';
    const topic = 'woodytoys/resume';
    const first = await connectClient(url, { clientId: id, clean: false, protocolVersion: 4, reconnectPeriod: 0 });
    await first.subscribeAsync(topic, { qos: 1 });
    await first.endAsync();
    const held = holdAtWill(id);
    const order: string[] = [];
    const client = mqtt.connect(url, { clientId: id, clean: false, protocolVersion: 4, reconnectPeriod: 0 });
    client.on('packetreceive', (packet) => order.push(packet.cmd));
    const got: string[] = [];
    client.on('message', (_t, payload) => got.push(payload.toString()));
    try {
      await held.atWill;
      broker.publish({ cmd: 'publish', topic, payload: Buffer.from('while resuming'), qos: 1, retain: false, dup: false }, () => {});
      // Aedes delivers on a later turn (setImmediate, then its outgoing store): give it those turns.
      for (let turn = 0; turn < 10; turn++) await new Promise((resolve) => setImmediate(resolve));
      held.release();
      await eventually(() => order.includes('publish'), { what: 'the message', intervalMs: 10 });
      assert.deepEqual(order.slice(0, 2), ['connack', 'publish'], 'the CONNACK first (MQTT-3.2.0-1)');
      // Handed over: the held copy, and the session's queued copy (QoS 1 allows both; none is lost).
      await eventually(() => got.length > 0, { what: 'mqtt.js to hand the message over', intervalMs: 10 });
      assert.deepEqual(new Set(got), new Set(['while resuming']));
    } finally {
      held.release();
      await client.endAsync(true);
    }
  });

  it('keeps a client present while a second connection with its id comes and goes before its registration, which Aedes loses it over', { timeout: 20_000 }, async () => {
    const id = 'adapter-present';
    const first = await connectClient(url, { clientId: id, clean: false, protocolVersion: 4, reconnectPeriod: 0 });
    await first.subscribeAsync('woodytoys/present', { qos: 1 });
    assert.ok(presence.has(id));
    const counted = broker.connectedClients;
    const open = connected();
    // The second connection logs in; between restoring the session and registering (storing its
    // will), its socket closes: Aedes's Client.close unregisters by id, the first connection's entry.
    const held = holdAtWill(id);
    const socket = connectTcp(Number(new URL(url).port), '127.0.0.1');
    try {
      socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: id, keepalive: 30 }));
      await held.atWill;
      const second = conns.get(id)!.at(-1)!;
      socket.destroy();
      await once(second, 'close');
      assert.equal(broker.connectedClients, counted - 1, 'Aedes 1.2.0 counts the first connection gone (if not any more, Presence guards a fixed bug)');
      assert.equal(connected(), open, 'the gauge still counts it');
      assert.equal(first.connected, true, 'the first connection is still open');
      assert.equal(presence.has(id), true, 'and present');
      assert.deepEqual(gone.filter((g) => g === id), [], 'it is not gone');
    } finally {
      held.release();
    }
    await first.endAsync();
    await eventually(() => !presence.has(id), { what: 'the first connection gone', intervalMs: 10 });
    await eventually(() => connected() === open - 1, { what: 'the gauge to count it off', intervalMs: 10 });
    assert.deepEqual(gone.filter((g) => g === id), [id], 'gone once, when its last connection closed');
  });

  it('hands a routed publish over as the object authorizePublish was given', async () => {
    const { client } = await connect('adapter-routed');
    try {
      await client.publishAsync('woodytoys/routed', 'once', { qos: 1 });
      const packet = await eventually(() => routed.find((p) => (p as { topic?: string }).topic === 'woodytoys/routed'), { what: 'the publish routed', intervalMs: 10 });
      assert.ok(authorized.has(packet), 'the same object, not a copy');
    } finally {
      await client.endAsync(true);
    }
  });
});

describe('live deliveries that do not wait for a connection to drain (handleTcp with an unsent bound)', () => {
  let broker: Aedes;
  let server: Server;
  let url: string;
  const persistence = new MemoryPersistence();
  const passed: string[] = [];

  before(async () => {
    broker = await Aedes.createBroker({ persistence });
    server = createServer((socket) => handleTcp(broker, socket, { maxBytes: 8 << 20, onPassed: (client) => passed.push(client.id), detached: () => true }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(async () => {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("delivers, in order and all of them, the messages held for a resuming session's CONNACK, more than Aedes keeps under way", { timeout: 60_000 }, async () => {
    const N = 2000; // Aedes (mqemitter) keeps 100 under way; the rest wait for a place
    const first = await mqtt.connectAsync(url, { clientId: 'held-many', clean: false, reconnectPeriod: 0 });
    await first.subscribeAsync('held/#', { qos: 0 });
    await first.endAsync();
    // The resume takes a while (as a Redis round trip under load may): the CONNACK waits for delWill.
    const delWill = persistence.delWill.bind(persistence);
    let slow = true;
    persistence.delWill = ((client: { id: string }) => (slow ? new Promise((r) => setTimeout(r, 200)).then(() => delWill(client as never)) : delWill(client as never))) as typeof persistence.delWill;
    const seen: number[] = [];
    const back = mqtt.connect(url, { clientId: 'held-many', clean: false, reconnectPeriod: 0 });
    back.on('message', (_topic, payload) => seen.push(Number(payload.toString())));
    try {
      await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < N; i++) broker.publish({ cmd: 'publish', topic: `held/${i % 10}`, payload: Buffer.from(String(i)), qos: 0, retain: false, dup: false }, () => {});
      await new Promise<void>((resolve) => back.once('connect', () => resolve()));
      slow = false;
      await eventually(() => seen.length >= N || undefined, { what: `the ${N} messages`, intervalMs: 20 });
      // Started each from the one before, the waiting ones had overflowed the stack, and gone out
      // ahead of the held ones, which Aedes then dropped as duplicates.
      assert.deepEqual(seen, Array.from({ length: N }, (_, i) => i));
      assert.deepEqual(passed, []);
    } finally {
      persistence.delWill = delWill;
      await back.endAsync(true);
    }
  });

  it('closes a detached client that stops reading with less than the bound unsent, once nothing has gone out for a while', { timeout: 60_000 }, async () => {
    const stalledBroker = await Aedes.createBroker({});
    const closedIds: string[] = [];
    const stalledServer = createServer((socket) => handleTcp(stalledBroker, socket, { maxBytes: 256 << 20, stalledMs: 300, onPassed: (client) => closedIds.push(client.id), detached: () => true }));
    await new Promise<void>((resolve) => stalledServer.listen(0, '127.0.0.1', resolve));
    const port = (stalledServer.address() as { port: number }).port;
    const raw = await RawClient.open(`mqtt://127.0.0.1:${port}`);
    try {
      raw.send(connectPacket({ clientId: 'stalls', clean: true }));
      raw.send(subscribePacket(['big/#']));
      await eventually(() => raw.answers().some((a) => a.type === 'suback'), { what: 'the SUBACK', intervalMs: 10 });
      raw.socket.pause();
      // More than loopback's buffers hold, far less than the 256 MiB bound: only the stall can end it.
      const payload = Buffer.alloc(64 * 1024, 'z');
      for (let i = 0; i < 400; i++) stalledBroker.publish({ cmd: 'publish', topic: 'big/x', payload, qos: 0, retain: false, dup: false }, () => {});
      await eventually(() => closedIds.includes('stalls') || undefined, { what: 'the stalled client closed', intervalMs: 20 });
    } finally {
      raw.close();
      await new Promise<void>((resolve) => stalledBroker.close(() => resolve()));
      await new Promise<void>((resolve) => stalledServer.close(() => resolve()));
    }
  });
});
