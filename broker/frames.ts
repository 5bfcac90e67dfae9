// MQTT framing read off the raw inbound bytes, ahead of the broker's own parser: each packet's type
// and announced length as soon as its fixed header is in, so a packet over the size limit is refused
// before its body is buffered anywhere, and the first bytes of the bodies the protocol rules need
// (broker/conformance.ts). A pure state machine: bytes in, frames or a problem out.

export interface Frame {
  /** packet type, 1 CONNECT … 14 DISCONNECT */
  type: number;
  /** the fixed header's low four bits (a PUBLISH's DUP, QoS and RETAIN) */
  flags: number;
  /** remaining length announced by the fixed header */
  length: number;
  /** the first bytes of the body, as many as `keep` asked for */
  head: Buffer;
}

export const CONNECT = 1;
export const PUBLISH = 3;
export const SUBSCRIBE = 8;
export const UNSUBSCRIBE = 10;

/** Body bytes the rules need: all of CONNECT, SUBSCRIBE and UNSUBSCRIBE, a PUBLISH's topic (at most 2 + 65,535 bytes). */
export function bytesToKeep(type: number, length: number): number {
  if (type === CONNECT || type === SUBSCRIBE || type === UNSUBSCRIBE) return length;
  if (type === PUBLISH) return Math.min(length, 2 + 0xffff);
  return 0;
}

/** The head of a frame that keeps nothing (a PUBACK, a PINGREQ). */
const NOTHING = Buffer.alloc(0);

/**
 * Frames in the order their last byte came. A frame's head may be a view of the chunk it came in:
 * read it before the chunk is let go of (the reader never keeps one).
 */
export class FrameReader {
  #stage: 'header' | 'length' | 'body' = 'header';
  #type = 0;
  #flags = 0;
  #length = 0;
  #lengthBytes = 0;
  #remaining = 0;
  #keep = 0;
  #head: Buffer[] = [];
  #kept = 0;

  constructor(private readonly maxLength: number) {}

  /** Reads `chunk`: the frames it completes, or why the stream must be closed (then stop feeding it). */
  push(chunk: Buffer): { frames: Frame[]; problem?: string } {
    const frames: Frame[] = [];
    let o = 0;
    while (o < chunk.length) {
      if (this.#stage === 'header') {
        this.#flags = chunk[o]! & 0x0f;
        this.#type = chunk[o++]! >> 4;
        this.#length = 0;
        this.#lengthBytes = 0;
        this.#stage = 'length';
      } else if (this.#stage === 'length') {
        const b = chunk[o++]!;
        this.#length += (b & 0x7f) * 128 ** this.#lengthBytes++;
        if (b & 0x80) {
          if (this.#lengthBytes === 4) return { frames, problem: 'malformed remaining length' };
          continue;
        }
        if (this.#length > this.maxLength) return { frames, problem: `a packet of ${this.#length} bytes is over the limit of ${this.maxLength}` };
        this.#remaining = this.#length;
        this.#keep = bytesToKeep(this.#type, this.#length);
        this.#head = [];
        this.#kept = 0;
        this.#stage = 'body';
        if (this.#remaining === 0) frames.push(this.#finish());
      } else {
        const n = Math.min(this.#remaining, chunk.length - o);
        const want = Math.min(n, this.#keep - this.#kept);
        if (want > 0) {
          this.#head.push(chunk.subarray(o, o + want));
          this.#kept += want;
        }
        o += n;
        this.#remaining -= n;
        if (this.#remaining === 0) frames.push(this.#finish());
      }
    }
    return { frames };
  }

  #finish(): Frame {
    this.#stage = 'header';
    // Read at once and let go (limits.ts): a head in one piece is a view of the chunk, not a copy,
    // since every PUBLISH has one (its topic and what follows, the payload of a small message).
    const head = this.#head.length === 1 ? this.#head[0]! : this.#head.length === 0 ? NOTHING : Buffer.concat(this.#head);
    this.#head = [];
    return { type: this.#type, flags: this.#flags, length: this.#length, head };
  }
}
