// Where the shared subscriptions reach into Aedes's private state (checked against aedes 1.2.0,
// lib/client.js). Each reach-in is here, with why it is needed.
import type { Aedes, Client } from 'aedes';

interface ClientInternals {
  /** The packet identifier counter Aedes uses for the connection's deliveries. */
  _nextId: number;
  /** mqtt-packet's parser; Aedes's `enqueue` listener hands each packet to its handlers. */
  _parser: NodeJS.EventEmitter;
  /** Refreshed by Aedes on every packet; the connection is closed when it fires. */
  _keepaliveTimer: NodeJS.Timeout | null;
}

const internals = (client: Client) => client as unknown as ClientInternals;

/**
 * Takes the next packet identifier from the counter Aedes uses for this connection, skipping those
 * `inUse`: the group queue sends its PUBLISH packets itself, on the same connection as Aedes's own
 * deliveries, so both must draw from one counter.
 */
export function nextPacketId(client: Client, inUse: { has(id: number): boolean }): number {
  const c = internals(client);
  for (;;) {
    const id = c._nextId;
    c._nextId = id >= 65535 ? 1 : id + 1;
    if (!inUse.has(id)) return id;
  }
}

/**
 * Hands each PUBACK to `take` before Aedes sees it; those it claims (acknowledgements of the group
 * queue's own deliveries) skip Aedes's handling: a promise, a persistence look-up and an event per
 * acknowledgement, which at tens of thousands of messages a second is a good part of the broker's
 * time. The others go on to Aedes as before. Aedes counts the packets it is handling in a read to
 * know when to read on; a packet taken here is never counted, so the count stays right.
 */
export function takeAcknowledgements(broker: Aedes, take: (client: Client, messageId: number) => boolean): void {
  broker.on('client', (client) => {
    const c = internals(client);
    const parser = c._parser;
    const handlers = parser.listeners('packet') as Array<(this: unknown, packet: { cmd: string; messageId?: number }) => void>;
    if (handlers.length !== 1) return; // not the Aedes this was written for: leave it alone
    const enqueue = handlers[0]!;
    parser.removeListener('packet', enqueue);
    parser.on('packet', function (this: unknown, packet: { cmd: string; messageId?: number }) {
      if (packet.cmd === 'puback' && packet.messageId !== undefined && client.connected && take(client, packet.messageId)) {
        c._keepaliveTimer?.refresh();
        broker.emit('ack', packet as never, client);
        return;
      }
      enqueue.call(this, packet);
    });
  });
}
