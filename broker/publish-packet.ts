// The one MQTT packet the broker writes itself: a PUBLISH to a shared-subscription member, sent
// outside Aedes's delivery path so the group queue controls packet identifiers and flow. mqtt-packet
// encodes each message once, when it is queued, with packet identifier 0; the queue stores those
// bytes, and sending copies them and stamps the identifier (and the DUP flag for a resend), so a
// drain never encodes anything (bench/publish-encoding.ts measures why; publish-packet.test.ts holds
// the stamped bytes to mqtt-packet's own encoding).
import mqttPacket from 'mqtt-packet';

/** The PUBLISH packet a member receives, with packet identifier 0 (QoS 1) to be stamped when sent. */
export function encodePublish(topic: string, payload: Buffer, qos: 0 | 1): Buffer {
  return mqttPacket.generate({ cmd: 'publish', topic, payload, qos, dup: false, retain: false, ...(qos > 0 ? { messageId: 0 } : {}) });
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
