// A raw HTTP/1.1 client for tests that must control exactly what is sent and when: write a
// whole body before reading, read an answer mid-upload, see whether the server ended with a FIN
// or a reset. fetch() hides all of that.
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';

export interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A raw HTTP/1.1 connection: what a client sends, exactly, and each answer as it arrives. */
export class Connection {
  private buffer = '';
  private waiting: ((a: Answer) => void) | undefined;
  readonly ended: Promise<'end' | 'error'>;
  constructor(readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      this.deliver();
    });
    this.ended = new Promise((resolve) => {
      socket.once('end', () => resolve('end'));
      socket.once('error', () => resolve('error'));
    });
  }
  static async open(port: number, host = '127.0.0.1', localAddress?: string): Promise<Connection> {
    const socket = connect({ port, host, ...(localAddress ? { localAddress } : {}) });
    await once(socket, 'connect');
    return new Connection(socket);
  }
  private deliver() {
    const headEnd = this.buffer.indexOf('\r\n\r\n');
    if (headEnd < 0 || !this.waiting) return;
    const [statusLine, ...lines] = this.buffer.slice(0, headEnd).split('\r\n');
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    const length = Number(headers['content-length'] ?? 0);
    if (this.buffer.length < headEnd + 4 + length) return;
    const body = this.buffer.slice(headEnd + 4, headEnd + 4 + length);
    this.buffer = this.buffer.slice(headEnd + 4 + length);
    const resolve = this.waiting;
    this.waiting = undefined;
    resolve({ status: Number(statusLine!.split(' ')[1]), headers, body });
  }
  answer(): Promise<Answer> {
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      this.socket.once('error', reject);
      this.deliver();
    });
  }
  /** Writes everything and resolves once the kernel took it (or rejects with EPIPE/ECONNRESET). */
  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (err) => (err ? reject(err) : resolve())));
  }
}

