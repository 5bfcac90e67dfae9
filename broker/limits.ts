// Bounded before trust: what a connection may cost the broker before it has logged in, enforced on
// the raw bytes ahead of Aedes (which buffers a whole packet, however large, before anyone looks at
// it). Connections per address (all of them, and those still before their CONNECT), a deadline for
// the CONNECT, a maximum packet size on every packet, and the protocol rules of broker/conformance.ts.
// Past a limit the connection is closed at once, with a log line; a CONNECT the rules refuse is first
// answered with its CONNACK return code.
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../lib/log.js';
import { inboundBytes, refuseConnect } from './aedes-adapter.js';
import { checkConnect, checkFilters, checkPublish, type Violation } from './conformance.js';
import { CONNECT, FrameReader, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, type Frame } from './frames.js';

export interface LimitOptions {
  maxPacketBytes: number;
  connectTimeoutMs: number;
  /** open connections per address */
  maxConnectionsPerAddress: number;
  /** connections per address that have not sent their CONNECT yet */
  maxConnectingPerAddress: number;
  log: Logger;
  /** each refusal, for metrics */
  onRefused?: (kind: 'limit' | 'protocol') => void;
}

/** What one address holds now. */
export interface AddressLoad {
  open: number;
  /** of those, the ones that have not sent their CONNECT yet */
  connecting: number;
}

/** Why one more connection from an address holding `load` is too many, or undefined when it may come. */
export function overAddressLimit(load: AddressLoad, { maxConnectionsPerAddress, maxConnectingPerAddress }: Pick<LimitOptions, 'maxConnectionsPerAddress' | 'maxConnectingPerAddress'>): string | undefined {
  if (load.open >= maxConnectionsPerAddress) return `${load.open} connections from this address already (BROKER_MAX_CONNECTIONS_PER_ADDRESS)`;
  if (load.connecting >= maxConnectingPerAddress) return `${load.connecting} connections from this address still before their CONNECT (BROKER_MAX_CONNECTING_PER_ADDRESS)`;
  return undefined;
}

/** One accepted TCP connection, until its CONNECT is in. */
interface Pending {
  address: string;
  deadline?: NodeJS.Timeout;
  connecting: boolean;
}

export class ConnectionLimits {
  readonly #addresses = new Map<string, AddressLoad>();
  readonly #pending = new WeakMap<Socket, Pending>();
  /** Why a stream was condemned: the broker's hooks refuse everything on it from then on. */
  readonly #violations = new WeakMap<object, Violation>();
  /** address and reason → until when the same refusal is counted instead of logged, and how many were */
  readonly #quiet = new Map<string, { until: number; count: number }>();

  constructor(private readonly opts: LimitOptions) {}

  /**
   * A TCP connection was accepted (by the MQTT listener, or the WebSocket listener's HTTP server):
   * counts it against its address and starts the CONNECT deadline. False, and the socket closed,
   * when the address is over a limit.
   */
  accept(socket: Socket): boolean {
    const address = socket.remoteAddress ?? 'unknown';
    const a = this.#addresses.get(address) ?? { open: 0, connecting: 0 };
    const over = overAddressLimit(a, this.opts);
    if (over) {
      this.#refused(address, { reason: over }, 'limit');
      socket.destroy();
      return false;
    }
    a.open++;
    a.connecting++;
    this.#addresses.set(address, a);
    const deadline = setTimeout(() => {
      this.#refused(address, { reason: `no CONNECT within ${this.opts.connectTimeoutMs} ms (BROKER_CONNECT_TIMEOUT_MS)` }, 'limit');
      socket.destroy();
    }, this.opts.connectTimeoutMs);
    deadline.unref();
    const pending: Pending = { address, connecting: true, deadline };
    this.#pending.set(socket, pending);
    socket.once('close', () => {
      this.#connected(pending);
      if (--a.open === 0) this.#addresses.delete(address);
    });
    return true;
  }

  /**
   * Reads the MQTT bytes of an accepted connection: `stream` is the socket itself, or the WebSocket
   * stream carried by `socket`. Call right after the broker took the stream.
   */
  watch(stream: Duplex, socket: Socket): void {
    // A connection accept() never saw still has its packets checked; it just has no deadline or count.
    const pending = this.#pending.get(socket) ?? { address: socket.remoteAddress ?? 'unknown', connecting: false };
    const reader = new FrameReader(this.opts.maxPacketBytes);
    let first = true;
    const stop = inboundBytes(stream, (chunk) => {
      const { frames, problem } = reader.push(chunk);
      for (const frame of frames) {
        const violation = this.#check(frame, first);
        first = false;
        if (violation) return this.#condemn(stream, socket, pending.address, violation);
        if (frame.type === CONNECT) this.#connected(pending);
      }
      if (problem) this.#condemn(stream, socket, pending.address, { reason: problem }, 'limit');
    });
    stream.once('close', stop);
  }

  /** Why this stream was condemned (then every packet on it is refused), or undefined. */
  violation(stream: object): Violation | undefined {
    return this.#violations.get(stream);
  }

  #check(frame: Frame, first: boolean): Violation | undefined {
    if (first && frame.type !== CONNECT) return { reason: 'the first packet is not a CONNECT' };
    switch (frame.type) {
      case CONNECT:
        return checkConnect(frame.head);
      case PUBLISH:
        return checkPublish(frame.head, (frame.flags >> 1) & 3, frame.length);
      case SUBSCRIBE:
        return checkFilters(frame.head, true);
      case UNSUBSCRIBE:
        return checkFilters(frame.head, false);
      default:
        return undefined;
    }
  }

  #connected(pending: Pending): void {
    clearTimeout(pending.deadline);
    if (!pending.connecting) return;
    pending.connecting = false;
    const a = this.#addresses.get(pending.address);
    if (a) a.connecting--;
  }

  #condemn(stream: Duplex, socket: Socket, address: string, violation: Violation, kind: 'limit' | 'protocol' = 'protocol'): void {
    if (this.#violations.has(stream)) return;
    this.#violations.set(stream, violation);
    this.#refused(address, violation, kind);
    if (violation.returnCode === undefined) socket.destroy();
    else refuseConnect(stream, violation.returnCode);
  }

  /** One log line per refusal; the same refusal from the same address at most once a second (then with a count). */
  #refused(address: string, { reason, clientId, protocolLevel, returnCode }: Violation, kind: 'limit' | 'protocol'): void {
    this.opts.onRefused?.(kind);
    const now = Date.now();
    const key = `${address} ${reason}`;
    const quiet = this.#quiet.get(key);
    if (quiet && now < quiet.until) {
      quiet.count++;
      return;
    }
    if (this.#quiet.size > 10_000) for (const [k, q] of this.#quiet) if (q.until < now) this.#quiet.delete(k);
    this.#quiet.set(key, { until: now + 1000, count: 0 });
    this.opts.log.warn(
      { address, clientId, protocolLevel, returnCode, reason, ...(quiet?.count ? { alsoRefusedSinceLastLine: quiet.count } : {}) },
      returnCode === 1
        ? 'connection refused: unsupported protocol version'
        : returnCode === 2
          ? 'connection refused: identifier rejected'
          : kind === 'limit'
            ? 'connection closed: over a limit'
            : 'connection closed: protocol violation',
    );
  }
}
