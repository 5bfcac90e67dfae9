// The one MQTT packet the broker writes itself: a PUBLISH to a shared-subscription member, sent
// outside Aedes's delivery path so the group queue controls packet identifiers and flow. Each
// message is encoded once, when it is queued, with packet identifier 0; the queue stores those
// bytes, and sending copies them and stamps the identifier (and the DUP flag for a resend), so a
// drain never encodes anything (bench/publish-encoding.ts measures why; publish-packet.test.ts holds
// the bytes to mqtt-packet's own encoding).

/** The largest remaining length MQTT can express (four bytes of seven bits). */
const MAX_REMAINING = 268_435_455;

/**
 * The PUBLISH packet a member receives, with packet identifier 0 (QoS 1) to be stamped when sent.
 * Written by hand, once per message: mqtt-packet's generate() takes several times as long for the
 * same bytes (its options and checks), and publish-packet.test.ts holds the two equal byte for byte.
 */
export function encodePublish(topic: string, payload: Buffer, qos: 0 | 1): Buffer {
  const topicBytes = Buffer.byteLength(topic);
  const remaining = 2 + topicBytes + (qos ? 2 : 0) + payload.length;
  if (topicBytes > 0xffff || remaining > MAX_REMAINING) throw new RangeError('PUBLISH too large for MQTT');
  const lengthBytes = remaining < 0x80 ? 1 : remaining < 0x4000 ? 2 : remaining < 0x200000 ? 3 : 4;
  const packet = Buffer.allocUnsafe(1 + lengthBytes + remaining);
  packet[0] = 0x30 | (qos << 1);
  let at = 1;
  for (let left = remaining; ; ) {
    const digit = left & 0x7f;
    left >>>= 7;
    packet[at++] = left > 0 ? digit | 0x80 : digit;
    if (left === 0) break;
  }
  packet.writeUInt16BE(topicBytes, at);
  at += 2;
  at += packet.write(topic, at, 'utf8');
  if (qos) {
    packet[at++] = 0;
    packet[at++] = 0;
  }
  payload.copy(packet, at);
  return packet;
}

/** The QoS a stored PUBLISH packet was encoded with. */
export const qosOf = (packet: Buffer): 0 | 1 => ((packet[0]! >> 1) & 3 ? 1 : 0);

/** Where the variable header (the topic's length) starts: after the fixed header's remaining length. */
function variableHeaderAt(packet: Buffer): number {
  let at = 1;
  while (packet[at]! & 0x80) at++;
  return at + 1;
}

/**
 * Copies a stored QoS 1 PUBLISH into `into` at `offset` with its packet identifier and DUP flag;
 * returns the offset after it.
 */
export function stampPublish(into: Buffer, offset: number, packet: Buffer, messageId: number, dup: boolean): number {
  packet.copy(into, offset);
  if (dup) into[offset] = into[offset]! | 0x08;
  const topicAt = offset + variableHeaderAt(packet);
  into.writeUInt16BE(messageId, topicAt + 2 + into.readUInt16BE(topicAt));
  return offset + packet.length;
}

/** The same message as a QoS 0 PUBLISH, for a member subscribed with QoS 0. */
export function asQos0(packet: Buffer): Buffer {
  const topicAt = variableHeaderAt(packet);
  const topicLength = packet.readUInt16BE(topicAt);
  const topic = packet.toString('utf8', topicAt + 2, topicAt + 2 + topicLength);
  const payloadAt = topicAt + 2 + topicLength + (qosOf(packet) ? 2 : 0);
  return encodePublish(topic, packet.subarray(payloadAt), 0);
}
