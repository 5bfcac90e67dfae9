// The one reach into mqtt.js's internals (checked against mqtt 5.16.0): taking QoS 1 messages off a
// connection without acknowledging them, so that a consumer holds several at once and sends each
// PUBACK only when that message's effect is durable.
//
// mqtt.js reads a connection's packets one at a time: it calls `handleMessage(packet, callback)` and
// takes the next packet only once the callback runs, and that same callback sends the PUBACK
// (handlers/publish.js, case 1: `handleMessage(packet, (err) => { if (err) return done(err);
// _sendPacket(puback, done) })`). Calling back with an error is the one way to let it read on
// without acknowledging: `done` only moves its reader to the next packet. The PUBACK is then written
// here, later, straight to the socket the message came on: never through `_sendPacket`, which
// would keep it while offline and send it on the next connection, where that packet identifier
// may name another message. A message still in hand when its connection drops is simply never
// acknowledged; the broker delivers it again (consumers are idempotent).
import mqttPacket from 'mqtt-packet';
import type { IPublishPacket, MqttClient } from 'mqtt';

/** A message taken off the connection; its PUBACK goes out when ack() is called. */
export interface Delivery {
  packet: IPublishPacket;
  /** Acknowledges the message (QoS 1), on the connection it arrived on if that is still open. */
  ack(): void;
}

/** Handed to handleMessage's callback: mqtt.js then moves on without sending a PUBACK. */
const ACK_LATER = new Error('acknowledged later by the consumer');

type Stream = MqttClient['stream'];

/**
 * Takes over `client`'s incoming messages. `take(delivery, readOn)` gets each one; calling
 * `readOn()` lets the connection read its next packet (at once while the consumer has room, later
 * when it is full: that backpressure reaches the broker through TCP).
 */
export function deferAcks(client: MqttClient, take: (delivery: Delivery, readOn: () => void) => void): void {
  // PUBACKs of one turn of the event loop leave in one write per connection.
  let pending = new Map<Stream, Buffer[]>();
  const flush = () => {
    const batch = pending;
    pending = new Map();
    for (const [stream, acks] of batch) {
      if (!stream.destroyed && stream.writable) stream.write(acks.length === 1 ? acks[0]! : Buffer.concat(acks));
    }
  };
  const queueAck = (stream: Stream, messageId: number) => {
    // A new connection means new packet identifiers: an acknowledgement for an old one is dropped.
    if (client.stream !== stream) return;
    if (pending.size === 0) setImmediate(flush);
    let acks = pending.get(stream);
    if (!acks) pending.set(stream, (acks = []));
    acks.push(mqttPacket.generate({ cmd: 'puback', messageId }));
  };

  client.handleMessage = (packet, callback) => {
    if (packet.qos !== 1 || packet.messageId === undefined) {
      // QoS 0 needs no acknowledgement; QoS 2 (never asked for here) keeps mqtt.js's own handshake.
      take({ packet, ack: packet.qos === 2 ? () => callback() : () => {} }, packet.qos === 2 ? () => {} : () => callback());
      return;
    }
    const stream = client.stream;
    const messageId = packet.messageId;
    let acked = false;
    take(
      {
        packet,
        ack: () => {
          if (acked) return;
          acked = true;
          queueAck(stream, messageId);
        },
      },
      () => callback(ACK_LATER),
    );
  };
}
