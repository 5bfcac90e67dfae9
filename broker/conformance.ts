// MQTT 3.1.1 rules that Aedes does not enforce, checked on the raw bytes of a packet: mqtt-packet
// decodes strings leniently (ill-formed UTF-8 becomes U+FFFD), after which an invalid topic can no
// longer be told from a valid one. Pure functions over bytes; broker/limits.ts feeds them.
//
// A violation either ends the connection (`returnCode` unset), or is first answered with a CONNACK
// carrying `returnCode`, as the specification asks for a CONNECT it refuses.

export interface Violation {
  reason: string;
  /** CONNACK return code to answer before closing: 1 unacceptable protocol level, 2 identifier rejected. */
  returnCode?: 1 | 2;
  /** what could be read of the CONNECT, for the log line */
  clientId?: string;
  protocolLevel?: number;
}

/** Protocol name each level we speak must carry: MQTT 3.1 is "MQIsdp" level 3, MQTT 3.1.1 "MQTT" level 4. */
export const PROTOCOL_NAMES: Readonly<Record<number, string>> = { 3: 'MQIsdp', 4: 'MQTT' };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Why `bytes` is not an MQTT UTF-8 string (well-formed, no U+0000: MQTT-1.5.3-1/2), or undefined. */
export function stringProblem(bytes: Buffer): string | undefined {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return 'ill-formed UTF-8';
  }
  return text.includes('\u0000') ? 'U+0000' : undefined;
}

/** Why `bytes` is not a valid topic name (a PUBLISH's or a will's), or undefined. */
export function topicNameProblem(bytes: Buffer): string | undefined {
  if (bytes.length === 0) return 'an empty topic name';
  // Every PUBLISH comes here: a topic of ASCII without U+0000 or a wildcard, as ours all are, is
  // valid without decoding it.
  if (plainAsciiTopic(bytes)) return undefined;
  const problem = stringProblem(bytes);
  if (problem) return `${problem} in a topic name`;
  if (bytes.includes(0x2b) || bytes.includes(0x23)) return 'a wildcard in a topic name';
  return undefined;
}

/** Reads MQTT's length-prefixed fields from a packet body; undefined past its end. */
class Fields {
  #o = 0;
  constructor(private readonly body: Buffer) {}
  get rest() {
    return this.body.length - this.#o;
  }
  bytes(n: number): Buffer | undefined {
    if (this.#o + n > this.body.length) return undefined;
    const b = this.body.subarray(this.#o, this.#o + n);
    this.#o += n;
    return b;
  }
  u16(): number | undefined {
    return this.bytes(2)?.readUInt16BE(0);
  }
  field(): Buffer | undefined {
    const n = this.u16();
    return n === undefined ? undefined : this.bytes(n);
  }
  /** MQTT 5 properties: a variable-length size, then that many bytes. */
  properties(): boolean {
    let size = 0;
    for (let mult = 1, i = 0; i < 4; i++, mult *= 128) {
      const b = this.bytes(1)?.[0];
      if (b === undefined) return false;
      size += (b & 0x7f) * mult;
      if ((b & 0x80) === 0) return this.bytes(size) !== undefined;
    }
    return false;
  }
}

/** The CONNECT rules: protocol name and level, client id, will topic and user name. */
export function checkConnect(body: Buffer): Violation | undefined {
  const f = new Fields(body);
  const name = f.field();
  const level = f.bytes(1)?.[0];
  if (name === undefined || level === undefined) return { reason: 'malformed CONNECT' };
  const protocol = name.toString('latin1');
  if (!Object.values(PROTOCOL_NAMES).includes(protocol)) return { reason: `unknown protocol name "${protocol.slice(0, 16)}"`, protocolLevel: level };
  const flags = f.bytes(1)?.[0];
  const keepalive = f.u16();
  if (flags === undefined || keepalive === undefined || (level === 5 && !f.properties())) return { reason: 'malformed CONNECT' };
  const clientIdBytes = f.field();
  if (clientIdBytes === undefined) return { reason: 'malformed CONNECT' };
  const idProblem = stringProblem(clientIdBytes);
  const clientId = idProblem ? undefined : clientIdBytes.toString('utf8');
  const seen = { protocolLevel: level, ...(clientId === undefined ? {} : { clientId }) };
  // [MQTT-3.1.2-2] a level we do not speak, or [MQTT-3.1.2-1] a name that is not that level's.
  if (PROTOCOL_NAMES[level] !== protocol) {
    const speaks = 'this broker speaks MQTT 3.1.1 (protocol "MQTT", level 4) and MQTT 3.1 ("MQIsdp", level 3)';
    const reason =
      level === 5 && protocol === 'MQTT'
        ? `MQTT 5 is not supported: ${speaks}; Mosquitto (broker/mosquitto/) is the alternative for MQTT 5 clients`
        : `protocol "${protocol}" level ${level} is not supported: ${speaks}`;
    return { reason, returnCode: 1, ...seen };
  }
  if (idProblem) return { reason: `${idProblem} in the client id`, ...seen };
  // [MQTT-3.1.3-8] a server-assigned id only makes sense for a session that ends with the connection.
  if (clientIdBytes.length === 0 && (flags & 0x02) === 0) return { reason: 'an empty client id needs a clean session', returnCode: 2, ...seen };
  if (flags & 0x04) {
    const willTopic = f.field();
    const willPayload = f.field();
    if (willTopic === undefined || willPayload === undefined) return { reason: 'malformed CONNECT', ...seen };
    const problem = topicNameProblem(willTopic);
    if (problem) return { reason: `${problem} (the will's)`, ...seen };
  }
  if (flags & 0x80) {
    const username = f.field();
    const problem = username && stringProblem(username);
    if (username === undefined || problem) return { reason: username === undefined ? 'malformed CONNECT' : `${problem} in the user name`, ...seen };
  }
  return undefined;
}

/** Whether `bytes` are all ASCII from U+0001, and neither '+' nor '#'. */
function plainAsciiTopic(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === 0 || b >= 0x80 || b === 0x2b || b === 0x23) return false;
  }
  return true;
}

/**
 * A PUBLISH's topic name, from the first bytes of its body (`head`), and room for its packet
 * identifier at QoS 1 and 2 within the `length` its fixed header announced. (mqtt-packet reads a
 * missing identifier from the bytes of the next packet, or gives -1, and Aedes acts on it.)
 */
export function checkPublish(head: Buffer, qos = 0, length = head.length): Violation | undefined {
  const topic = new Fields(head).field();
  if (topic === undefined || 2 + topic.length + (qos > 0 ? 2 : 0) > length) return { reason: 'malformed PUBLISH' };
  const problem = topicNameProblem(topic);
  return problem ? { reason: problem } : undefined;
}

/**
 * Topic filters one SUBSCRIBE or UNSUBSCRIBE may carry. The protocol sets no bound, and a 1 MiB
 * packet holds some 40,000; Aedes then stores the session once per filter, each time with the whole
 * list: 2,000 filters in one packet cost 700 MB and half a minute of CPU. Our services send a few.
 */
export const MAX_FILTERS_PER_PACKET = 100;

/** Every topic filter of a SUBSCRIBE (each followed by its QoS byte) or UNSUBSCRIBE, at most MAX_FILTERS_PER_PACKET. */
export function checkFilters(body: Buffer, withQos: boolean): Violation | undefined {
  const f = new Fields(body);
  if (f.u16() === undefined) return { reason: 'malformed packet' };
  for (let n = 1; f.rest > 0; n++) {
    if (n > MAX_FILTERS_PER_PACKET) return { reason: `more than ${MAX_FILTERS_PER_PACKET} topic filters in one packet` };
    const filter = f.field();
    if (filter === undefined || (withQos && f.bytes(1) === undefined)) return { reason: 'malformed packet' };
    const problem = stringProblem(filter);
    if (problem) return { reason: `${problem} in a topic filter` };
  }
  return undefined;
}
