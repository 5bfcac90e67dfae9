// What a connected client may subscribe to and publish, as Aedes's authorizeSubscribe and
// authorizePublish hooks: the protocol limits first (a violation already closes the connection),
// then the group queue's rules for a shared subscription and the ACL (auth.ts); an allowed publish
// goes to durable ingest, which answers Aedes once the message is committed.
import type { AedesOptions, Client } from 'aedes';
import type { Logger } from '../lib/log.js';
import type { Access } from './auth.js';
import { grant, refuse } from './granted.js';
import { SHARE_PREFIX, parseShare, type SharedSubscriptions } from './group-queue.js';
import type { Ingest } from './ingest.js';
import { tenfold } from './metrics.js';
import type { ConnectionLimits } from './limits.js';
import type { SessionPersistence, StoredPacket } from './persistence.js';

export interface AuthorizationParts {
  limits: ConnectionLimits;
  access: Access;
  shared: SharedSubscriptions;
  ingest: Ingest;
  /** The stored sessions: a refused filter is dropped from them. */
  persistence: Pick<SessionPersistence, 'removeSubscriptions'>;
  log: Logger;
  /** Counts a refusal, by what was refused. */
  onRefused: (what: 'subscribe' | 'publish') => void;
  /**
   * Room for a persistent client's session under its user's "#@ sessions" bound, or why none
   * (session-cap.ts); on several nodes, a promise of it (cluster-bounds.ts).
   */
  admitSession?: ((clientId: string) => string | undefined | Promise<string | undefined>) | undefined;
}

/**
 * Why a publish ends its connection, or undefined to accept it: a protocol rule its bytes broke
 * (limits.ts: the connection is already closing), or the ACL. MQTT 3.1.1 has no way to say
 * "refused" in a PUBACK, and a PUBACK would make the publisher believe it was delivered: the
 * connection is closed before any. Used by authorizePublish and by direct publishes (direct-publish.ts).
 */
export function publishRefusal({ limits, access, log, onRefused }: Omit<AuthorizationParts, 'shared' | 'ingest' | 'persistence'>): (client: Client | null, topic: string) => Error | undefined {
  return (client, topic) => {
    const violation = client && limits.violation(client.conn);
    if (violation) return new Error(violation.reason);
    const reason = access.publishRefusal(client, topic);
    if (!reason) return undefined;
    log.warn({ clientId: client?.id, topic, reason }, 'publish refused; closing the connection');
    onRefused('publish');
    return new Error(`publish to ${topic} refused: ${reason}`);
  };
}

export function authorizationHooks(
  parts: AuthorizationParts,
): Pick<AedesOptions, 'authorizeSubscribe' | 'authorizePublish' | 'authorizeForward'> & { unsubscribed(client: Client, filters: string[]): void } {
  const { limits, access, shared, ingest, persistence, log, onRefused, admitSession } = parts;
  const refusal = publishRefusal(parts);
  /**
   * Which of a connection's refused subscriptions are logged: the first with each reason (up to
   * ten reasons), then one line at its 10th, 100th, 1,000th… refusal, with the count. One SUBSCRIBE
   * carries 100 filters and a client may send them without end: a line each had let a stranger with
   * the public login write the broker's log at a hundred times its packet rate. Every refusal is
   * counted (mqtt_refused_total).
   */
  const refusals = new WeakMap<Client, { count: number; reasons: Set<string> }>();
  const refusalLog = (client: Client, reason: string): { refused: number } | undefined => {
    let seen = refusals.get(client);
    if (!seen) refusals.set(client, (seen = { count: 0, reasons: new Set() }));
    seen.count++;
    if (!seen.reasons.has(reason) && seen.reasons.size < 10) {
      seen.reasons.add(reason);
      return { refused: seen.count };
    }
    return tenfold(seen.count) ? { refused: seen.count } : undefined;
  };
  /** The filters each connection holds (granted, restored or new), against its login's "#@ filters" bound. */
  const held = new WeakMap<Client, Set<string>>();
  const heldBy = (client: Client) => {
    let filters = held.get(client);
    if (!filters) held.set(client, (filters = new Set()));
    return filters;
  };
  /**
   * A refused filter leaves its group and the client's session. Aedes also asks again for each
   * filter of a stored session it restores at a CONNECT, before the client is ready for deliveries:
   * one the rules do not allow (any more, or stored before refused filters were kept out) goes too.
   */
  const refused = (client: Client, sub: object & { topic: string }) => {
    onRefused('subscribe');
    refuse(sub);
    shared.leaveRefused(client, sub.topic);
    if (client.clean) return;
    persistence.removeSubscriptions({ id: client.id }, [sub.topic]).catch((err: unknown) => log.error({ err, clientId: client.id, filter: sub.topic }, 'could not drop a refused subscription from the session'));
  };
  return {
    /** An UNSUBSCRIBE gives its filters back (main.ts, as each is parsed). */
    unsubscribed(client: Client, filters: string[]) {
      const filtersHeld = held.get(client);
      for (const f of filters) filtersHeld?.delete(f);
    },
    authorizeForward: access.forward,
    authorizeSubscribe(client, sub, done) {
      // A topic filter the protocol rules refused (limits.ts): the connection is already closing.
      const violation = limits.violation(client.conn);
      if (violation) return done(new Error(violation.reason), null);
      const isShared = sub.topic.startsWith(SHARE_PREFIX);
      const parsed = isShared ? parseShare(sub.topic) : undefined;
      const filter = typeof parsed === 'object' ? parsed.filter : sub.topic;
      const filters = heldBy(client);
      const wasHeld = filters.has(sub.topic);
      const refuseWith = (reason: string) => {
        const logged = refusalLog(client, reason);
        if (logged) log.warn({ clientId: client.id, filter: sub.topic, reason, ...logged }, 'subscription refused');
        refused(client, sub);
        done(null, null);
      };
      const reason =
        (isShared ? shared.refusal(client, sub.topic) : undefined) ??
        access.subscribeRefusal(client, filter, typeof parsed === 'object' ? parsed.group : undefined) ??
        (wasHeld ? undefined : access.filterRefusal(client, filters.size));
      if (reason) return refuseWith(reason);
      const grantIt = () => {
        filters.add(sub.topic);
        // Shared subscriptions are delivered with QoS 1 at most.
        const granted: typeof sub = isShared && sub.qos > 1 ? { ...sub, qos: 1 } : sub;
        if (!isShared || !shared.clustered) {
          grant(sub, granted.qos);
          return done(null, granted);
        }
        // Several nodes: a member in the store before its SUBACK (nothing to wait for on one node).
        shared.admit(client, sub.topic).then(
          () => {
            grant(sub, granted.qos);
            done(null, granted);
          },
          (err: unknown) => failed(err, 'could not join the group; subscription refused'),
        );
      };
      /** What Redis could not do (several nodes): the filter is refused, and not held. */
      const failed = (err: unknown, message: string) => {
        log.error({ err, clientId: client.id, filter: sub.topic }, message);
        if (!wasHeld) filters.delete(sub.topic);
        refused(client, sub);
        done(null, null);
      };
      const admission = client.clean ? undefined : admitSession?.(client.id);
      if (admission === undefined) return grantIt();
      if (typeof admission === 'string') return refuseWith(admission);
      // Several nodes: the session is counted in Redis first (cluster-bounds.ts); the filter is held
      // meanwhile, so that the filters bound counts it for the SUBSCRIBE's next filters.
      filters.add(sub.topic);
      admission.then(
        (why) => {
          if (why === undefined) return grantIt();
          if (!wasHeld) filters.delete(sub.topic);
          refuseWith(why);
        },
        (err: unknown) => failed(err, 'could not count the session; subscription refused'),
      );
    },
    authorizePublish(client, packet, done) {
      // An error makes Aedes close the connection before any PUBACK.
      const refused = refusal(client, packet.topic);
      if (refused) return done(refused);
      ingest.accept(packet as StoredPacket, done, client);
    },
  };
}
