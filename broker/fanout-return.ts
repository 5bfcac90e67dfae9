// Several nodes: when Redis comes back, when has this node's fan-out really resumed? ioredis
// reports the subscription connection's 'connect' before it has subscribed again to every topic,
// so a client told to resume its session at that moment could miss what is published in between:
// queued for it in Redis, but never fanned out live. The proof is a message of this node's own,
// published through Redis and received back on a pattern subscription (ioredis subscribes its
// patterns again after its plain channels, in one command, so every one is back by then).
import type { EventEmitter } from 'node:events';

interface FanoutEmitter {
  on(topic: string, notify: (msg: unknown, done: () => void) => void, subscribed?: () => void): unknown;
  emit(msg: { topic: string; payload: Buffer; qos: number; retain: boolean; cmd: 'publish' }, done: (err?: Error) => void): unknown;
  state: EventEmitter;
}

/**
 * Calls `resumed` each time the fan-out comes back after its first connection, once a probe has
 * made the round trip through Redis. Returns a stop function (for shutdown).
 */
export function onFanoutReturn(mq: FanoutEmitter, nodeId: string, resumed: () => void, { probeEveryMs = 200 } = {}): () => void {
  const probes = `$SYS/${nodeId}/fanout-probe`;
  let connects = 0;
  let probing: NodeJS.Timeout | undefined;
  let sent = 0;
  const stopProbing = () => {
    clearInterval(probing);
    probing = undefined;
  };
  mq.on(`${probes}/+`, (_msg, done) => {
    done();
    if (!probing) return;
    stopProbing();
    resumed();
  });
  mq.state.on('subConnect', () => {
    if (++connects === 1 || probing) return; // the first is the start, not a return
    const probe = () => mq.emit({ topic: `${probes}/${++sent}`, payload: Buffer.alloc(0), qos: 0, retain: false, cmd: 'publish' }, () => {});
    probing = setInterval(probe, probeEveryMs);
    probe();
  });
  return stopProbing;
}
