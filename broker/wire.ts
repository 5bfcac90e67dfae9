// Bytes on the wire: the one MQTT packet the broker writes itself (a PUBLISH to a shared-subscription
// member, sent outside Aedes's delivery path so the group queue controls packet identifiers and
// flow). Write coalescing for the TCP connections is lib/wire.ts.

export interface OutgoingPublish {
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  messageId?: number;
  dup?: boolean;
}

export function encodePublish({ topic, payload, qos, messageId, dup = false }: OutgoingPublish): Buffer {
  const topicBytes = Buffer.byteLength(topic);
  const remaining = 2 + topicBytes + (qos > 0 ? 2 : 0) + payload.length;
  const lengthBytes: number[] = [];
  let n = remaining;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    lengthBytes.push(byte);
  } while (n > 0);
  const buf = Buffer.allocUnsafe(1 + lengthBytes.length + remaining);
  let o = 0;
  buf[o++] = 0x30 | (dup ? 0x08 : 0) | (qos << 1);
  for (const b of lengthBytes) buf[o++] = b;
  buf.writeUInt16BE(topicBytes, o);
  o += 2;
  o += buf.write(topic, o, 'utf8');
  if (qos > 0) {
    buf.writeUInt16BE(messageId ?? 0, o);
    o += 2;
  }
  payload.copy(buf, o);
  return buf;
}
