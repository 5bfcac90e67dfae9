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

/** The remote ports of the established IPv4 connections to `localPort` (the server's side of each). */
export function establishedPeers(localPort: number): Set<number> {
  const peers = new Set<number>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const [, local, remote, state] = line.trim().split(/\s+/);
    if (!local || !remote || state !== ESTABLISHED) continue;
    if (parseInt(local.split(':')[1]!, 16) === localPort) peers.add(parseInt(remote.split(':')[1]!, 16));
  }
  return peers;
}
