// Wills of the connections a crash cut off. Aedes publishes a stored will only when the broker that
// held the connection has been silent for four heartbeats (minutes); after a restart every stored
// will belongs to a connection that is gone, so publish them at once, before clients reconnect.
import type { Aedes, PublishPacket } from 'aedes';
import type { Logger } from '../lib/log.js';
import type { SqlitePersistence, StoredPacket } from './persistence.js';

export async function publishOrphanedWills(broker: Aedes, persistence: SqlitePersistence, log: Logger): Promise<number> {
  const wills = (await persistence.streamWill({ [broker.id]: Date.now() }).toArray()) as StoredPacket[];
  for (const will of wills) {
    const clientId = String(will.clientId);
    // The will as Aedes stored it (persistence.putWill): a PUBLISH with its owner's bookkeeping.
    const packet = will as PublishPacket;
    await new Promise<void>((resolve) => {
      // The ACL and durable ingest apply as to any publish; no client, as for Aedes's own wills.
      broker.authorizePublish(null, packet, (err) => {
        if (err) return resolve();
        broker.publish(packet, () => resolve());
      });
    });
    await persistence.delWill({ id: clientId });
  }
  if (wills.length > 0) log.info({ wills: wills.length }, 'published the wills of connections lost in the last stop');
  return wills.length;
}
