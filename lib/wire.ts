// Fewer, larger socket writes. On loopback a write system call costs far more than the bytes it
// carries (the kernel runs the receiver's side of TCP in the writer's call), and both Aedes and
// mqtt.js write each packet, often each part of a packet, separately: whatever one turn of the
// event loop writes to a stream leaves together in one call instead.
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';

const coalesced = new WeakSet<Writable>();

/**
 * Corks `stream` at its first write in a turn of the event loop and uncorks it after the turn.
 * `flush` schedules the uncork: setImmediate by default (after the turn's I/O callbacks too), or
 * process.nextTick for a writer that writes what it has in one go and should not wait a turn.
 */
export function coalesceWrites(stream: Writable, flush: (uncork: () => void) => void = setImmediate): void {
  if (coalesced.has(stream)) return;
  coalesced.add(stream);
  // Nagle would hold a small write back waiting for an acknowledgement; writes leave per turn already.
  (stream as Partial<Socket>).setNoDelay?.(true);
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  let corked = false;
  const uncork = () => {
    corked = false;
    stream.uncork();
  };
  stream.write = ((...args: unknown[]) => {
    if (!corked) {
      corked = true;
      stream.cork();
      flush(uncork);
    }
    return write(...args);
  }) as Writable['write'];
}
