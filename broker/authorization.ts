// What a connected client may subscribe to and publish, as Aedes's authorizeSubscribe and
// authorizePublish hooks: the protocol limits first (a violation already closes the connection),
// then the group queue's rules for a shared subscription and the ACL (auth.ts); an allowed publish
// goes to durable ingest, which answers Aedes once the message is committed.
import type { AedesOptions } from 'aedes';
import type { Logger } from '../lib/log.js';
import type { Access } from './auth.js';
import { SHARE_PREFIX, parseShare, type SharedSubscriptions } from './group-queue.js';
import type { Ingest } from './ingest.js';
import type { ConnectionLimits } from './limits.js';
import type { StoredPacket } from './persistence.js';

export interface AuthorizationParts {
  limits: ConnectionLimits;
  access: Access;
  shared: SharedSubscriptions;
  ingest: Ingest;
  log: Logger;
  /** Counts a refusal, by what was refused. */
  onRefused: (what: 'subscribe' | 'publish') => void;
}

export function authorizationHooks({ limits, access, shared, ingest, log, onRefused }: AuthorizationParts): Pick<AedesOptions, 'authorizeSubscribe' | 'authorizePublish' | 'authorizeForward'> {
  return {
    authorizeForward: access.forward,
    authorizeSubscribe(client, sub, done) {
      // A topic filter the protocol rules refused (limits.ts): the connection is already closing.
      const violation = limits.violation(client.conn);
      if (violation) return done(new Error(violation.reason), null);
      const isShared = sub.topic.startsWith(SHARE_PREFIX);
      const parsed = isShared ? parseShare(sub.topic) : undefined;
      const filter = typeof parsed === 'object' ? parsed.filter : sub.topic;
      const reason =
        (isShared ? shared.refusal(client, sub.topic) : undefined) ?? access.subscribeRefusal(client, filter, typeof parsed === 'object' ? parsed.group : undefined);
      if (reason) {
        log.warn({ clientId: client.id, filter: sub.topic, reason }, 'subscription refused');
        onRefused('subscribe');
        return done(null, null);
      }
      // Shared subscriptions are delivered with QoS 1 at most.
      const granted: typeof sub = isShared && sub.qos > 1 ? { ...sub, qos: 1 } : sub;
      if (!isShared || !shared.clustered) return done(null, granted);
      // Several nodes: a member in the store before its SUBACK (nothing to wait for on one node).
      shared.admit(client, sub.topic).then(
        () => done(null, granted),
        (err: unknown) => {
          log.error({ err, clientId: client.id, filter: sub.topic }, 'could not join the group; subscription refused');
          onRefused('subscribe');
          done(null, null);
        },
      );
    },
    authorizePublish(client, packet, done) {
      const violation = client && limits.violation(client.conn);
      if (violation) return done(new Error(violation.reason));
      const reason = access.publishRefusal(client, packet.topic);
      if (reason) {
        // An error here makes Aedes close the connection before any PUBACK: MQTT 3.1.1 has no way to
        // say "refused" in a PUBACK, and a PUBACK would make the publisher believe it was delivered.
        log.warn({ clientId: client?.id, topic: packet.topic, reason }, 'publish refused; closing the connection');
        onRefused('publish');
        return done(new Error(`publish to ${packet.topic} refused: ${reason}`));
      }
      ingest.accept(packet as StoredPacket, done, client);
    },
  };
}
