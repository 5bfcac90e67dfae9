// MQTT 3.1.1 packets written byte by byte, for the cases a well-behaved client library refuses to
// send (invalid UTF-8, U+0000, a protocol name that does not match its level, a CONNECT that
// announces 256 MiB), and a bare socket that records what the broker answers and when it closes.
import { connect, type Socket } from 'node:net';

type Bytes = string | Buffer;
const bytes = (b: Bytes) => (typeof b === 'string' ? Buffer.from(b, 'utf8') : b);

/** MQTT's variable-length "remaining length". */
export function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

/** A length-prefixed string (or binary data) field. */
export const field = (b: Bytes) => {
  const data = bytes(b);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(data.length);
  return Buffer.concat([len, data]);
};

const packet = (first: number, body: Buffer) => Buffer.concat([Buffer.from([first]), remainingLength(body.length), body]);

export interface ConnectFields {
  clientId: Bytes;
  protocolName?: string;
  level?: number;
  clean?: boolean;
  keepalive?: number;
  username?: Bytes;
  password?: Bytes;
  will?: { topic: Bytes; payload: Bytes; qos?: 0 | 1 };
}

export function connectPacket({ clientId, protocolName = 'MQTT', level = 4, clean = true, keepalive = 30, username, password, will }: ConnectFields): Buffer {
  const flags = (clean ? 0x02 : 0) | (will ? 0x04 | ((will.qos ?? 0) << 3) : 0) | (password !== undefined ? 0x40 : 0) | (username !== undefined ? 0x80 : 0);
  const keep = Buffer.alloc(2);
  keep.writeUInt16BE(keepalive);
  const parts = [field(protocolName), Buffer.from([level, flags]), keep];
  // MQTT 5 carries properties after the keep-alive; an empty set is one zero byte.
  if (level === 5) parts.push(Buffer.from([0]));
  parts.push(field(clientId));
  if (will) parts.push(...(level === 5 ? [Buffer.from([0])] : []), field(will.topic), field(will.payload));
  if (username !== undefined) parts.push(field(username));
  if (password !== undefined) parts.push(field(password));
  return packet(0x10, Buffer.concat(parts));
}

export function publishPacket({ topic, payload = '', qos = 1, messageId = 1 }: { topic: Bytes; payload?: Bytes; qos?: 0 | 1; messageId?: number }): Buffer {
  const id = Buffer.alloc(qos > 0 ? 2 : 0);
  if (qos > 0) id.writeUInt16BE(messageId);
  return packet(0x30 | (qos << 1), Buffer.concat([field(topic), id, bytes(payload)]));
}

export function subscribePacket(filters: Bytes[], messageId = 1): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(messageId);
  return packet(0x82, Buffer.concat([id, ...filters.map((f) => Buffer.concat([field(f), Buffer.from([1])]))]));
}

/** The fixed header of a CONNECT that announces `length` bytes, for streaming its body separately. */
export const connectHeader = (length: number) => Buffer.concat([Buffer.from([0x10]), remainingLength(length)]);

export interface Answer {
  type: 'connack' | 'puback' | 'suback' | 'publish' | 'other';
  /** CONNACK return code, PUBACK/SUBACK packet id, SUBACK granted codes */
  returnCode?: number;
  granted?: number[];
  messageId?: number;
}

/** A bare TCP connection to the broker: what it answered, and whether it closed the connection. */
export class RawClient {
  readonly socket: Socket;
  received = Buffer.alloc(0);
  closed = false;
  readonly closedAt: Promise<number>;
  readonly opened: Promise<void>;

  /** `localAddress`: the loopback address to connect from (127.0.0.N), to be another client. */
  constructor(url: string, { localAddress }: { localAddress?: string } = {}) {
    const { hostname, port } = new URL(url);
    this.socket = connect({ port: Number(port), host: hostname, localAddress });
    this.socket.on('data', (d: Buffer) => (this.received = Buffer.concat([this.received, d])));
    // The broker may reset the connection while we still write: that is the answer, not an error.
    this.socket.on('error', () => {});
    // Resolves once connected, or once closed: a broker may refuse a connection as soon as it accepts it.
    this.opened = new Promise((resolve) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('close', () => resolve());
    });
    this.closedAt = new Promise((resolve) =>
      this.socket.once('close', () => {
        this.closed = true;
        resolve(Date.now());
      }),
    );
  }

  static async open(url: string, options: { localAddress?: string } = {}): Promise<RawClient> {
    const c = new RawClient(url, options);
    await c.opened;
    return c;
  }

  send(data: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  /** Every complete packet received so far. */
  answers(): Answer[] {
    const out: Answer[] = [];
    let o = 0;
    const buf = this.received;
    while (o < buf.length) {
      let len = 0;
      let mult = 1;
      let i = o + 1;
      for (;;) {
        if (i >= buf.length) return out;
        const b = buf[i++]!;
        len += (b & 0x7f) * mult;
        mult *= 128;
        if ((b & 0x80) === 0) break;
      }
      if (i + len > buf.length) return out;
      const body = buf.subarray(i, i + len);
      const type = buf[o]! >> 4;
      if (type === 2) out.push({ type: 'connack', returnCode: body[1]! });
      else if (type === 4) out.push({ type: 'puback', messageId: body.readUInt16BE(0) });
      else if (type === 9) out.push({ type: 'suback', messageId: body.readUInt16BE(0), granted: [...body.subarray(2)] });
      else if (type === 3) out.push({ type: 'publish' });
      else out.push({ type: 'other' });
      o = i + len;
    }
    return out;
  }

  close(): void {
    this.socket.destroy();
  }
}
