// The machine's TCP connections as Linux lists them (/proc/net/tcp): a test that must know
// whether a connection survived (an idle keep-alive connection between nginx and a service) looks
// here instead of guessing from timing.
import { readFileSync } from 'node:fs';

const ESTABLISHED = '01';

/** Linux only: false when /proc/net/tcp can be read, else why not. */
export const tcpTableSkip = (() => {
  try {
    readFileSync('/proc/net/tcp', 'utf8');
    return false as const;
  } catch {
    return 'needs /proc/net/tcp (Linux)';
  }
})();

/** An IPv4 address as /proc/net/tcp writes it: the four bytes in host (little-endian) order, in hex. */
const procAddress = (ip: string) =>
  ip
    .split('.')
    .map((b) => Number(b).toString(16).toUpperCase().padStart(2, '0'))
    .reverse()
    .join('');

/**
 * The established IPv4 connections to a server listening on `host:port`, as the peers' `ip:port`.
 * The address matters: a client bound to another loopback address (127.0.0.2…) may be given the
 * same number as its own ephemeral port.
 */
export function establishedPeers(host: string, port: number): Set<string> {
  const local = `${procAddress(host)}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const peers = new Set<string>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const [, here, remote, state] = line.trim().split(/\s+/);
    if (here !== local || !remote || state !== ESTABLISHED) continue;
    const [ip, rport] = remote.split(':') as [string, string];
    peers.add(`${ip.match(/../g)!.reverse().map((b) => parseInt(b, 16)).join('.')}:${parseInt(rport, 16)}`);
  }
  return peers;
}
