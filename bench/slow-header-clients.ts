// One attacking process of bench/slow-clients.ts: holds `connections` connections to the gateway
// from one local address, each sending a request's headers a few bytes at a time and never
// finishing them (slowloris). A connection the server closes is opened again at once, so the count
// stays up for the whole run. Reports on stdout, one JSON line every 500 ms and one at the end.
//
// Run by bench/slow-clients.ts (as its own process, with the file-descriptor limit raised), from
// an environment variable SLOW_CLIENTS = {"host","port","from","connections","durationMs","dripMs"}.
import { connect, type Socket } from 'node:net';

interface Settings {
  host: string;
  port: number;
  from: string;
  connections: number;
  durationMs: number;
  /** How often each connection sends one more header line. */
  dripMs: number;
}

export interface AttackReport {
  /** Connections open now (connected, headers unfinished). */
  open: number;
  /** Connections made since the start. */
  opened: number;
  /** Connections the server closed (its header timeout). */
  closedByServer: number;
  /** Failed connects and socket errors by code (EMFILE, ECONNREFUSED, ECONNRESET, …). */
  errors: Record<string, number>;
  done: boolean;
}

/**
 * Connection attempts in flight at once, per process: enough to refill fast, not so many that the
 * kernel's SYN queue overflows (the attacker would then wait out SYN retransmissions, 1 s, 3 s…).
 */
const CONNECTING = 256;

function run({ host, port, from, connections, durationMs, dripMs }: Settings): void {
  const sockets = new Set<Socket>();
  const report: AttackReport = { open: 0, opened: 0, closedByServer: 0, errors: {}, done: false };
  let connecting = 0;
  let running = true;

  const fill = () => {
    while (running && sockets.size + connecting < connections && connecting < CONNECTING) {
      connecting++;
      const socket = connect({ host, port, localAddress: from });
      let connected = false;
      socket.setNoDelay(true);
      socket.once('connect', () => {
        connected = true;
        connecting--;
        sockets.add(socket);
        report.opened++;
        socket.write('GET /api/catalog/products HTTP/1.1\r\nHost: gateway\r\n');
        fill();
      });
      socket.on('data', () => undefined); // a 408 or 400 page, if the server sends one
      socket.once('error', (err: NodeJS.ErrnoException) => {
        report.errors[err.code ?? 'unknown'] = (report.errors[err.code ?? 'unknown'] ?? 0) + 1;
      });
      socket.once('close', () => {
        if (connected) {
          sockets.delete(socket);
          if (running) report.closedByServer++;
        } else {
          connecting--;
        }
        // A moment's pause after a failure, so that a refused address does not spin.
        if (running) setTimeout(fill, connected ? 0 : 100);
      });
    }
  };

  const drip = setInterval(() => {
    for (const socket of sockets) socket.write(`X-Slow-${report.opened % 1000}: 1\r\n`);
  }, dripMs);
  const print = () => process.stdout.write(`${JSON.stringify({ ...report, open: sockets.size })}\n`);
  const progress = setInterval(print, 500);
  fill();

  setTimeout(() => {
    running = false;
    clearInterval(drip);
    clearInterval(progress);
    report.done = true;
    print();
    for (const socket of sockets) socket.destroy();
    process.exit(0);
  }, durationMs);
}

run(JSON.parse(process.env.SLOW_CLIENTS ?? '{}') as Settings);
