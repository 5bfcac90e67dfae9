// Publishes that only shared subscriptions want, handled without Aedes's publish pipeline. A message
// no normal subscriber would get needs only what the broker contract asks of any publish: the same
// protocol limits, ACL and topic rules, durable ingest (its group-queue entries, write-behind
// included), and the PUBACK once that is done, in the order of the publishes. Aedes would add its
// series of callbacks, a PUBACK encoded by mqtt-packet, a topic match for subscribers there are none
// of, and its own `publish` event, per message. The packets come from Aedes's parser
// (aedes-adapter.ts, takePackets); everything else goes through Aedes as before. One node only:
// with several, subscribers on other nodes are not known here.
import type { Client } from 'aedes';
import { writePackets, type ParsedPublish } from './aedes-adapter.js';

/** Whether a publish's own fields let it skip Aedes: QoS 0 or 1, not retained, MQTT 3.1.1 (no properties). */
export function directByFields(packet: ParsedPublish): boolean {
  return packet.qos < 2 && !packet.retain && packet.properties === undefined;
}

/** Why Aedes would refuse a PUBLISH's topic (its lib/handlers/publish.js): the same answer here. */
export function topicRefusal(topic: string, maxLevels: number): string | undefined {
  if (topic.length === 0) return 'empty topic not allowed in PUBLISH';
  if (topic.includes('#')) return '# is not allowed in PUBLISH';
  if (topic.includes('+')) return '+ is not allowed in PUBLISH';
  let levels = 1;
  for (let i = topic.indexOf('/'); i >= 0 && levels <= maxLevels; i = topic.indexOf('/', i + 1)) levels++;
  if (levels > maxLevels) return 'topic has too many levels';
  return undefined;
}

/** The PUBACK for `messageId`: four bytes. */
export function pubackFor(messageId: number): Buffer {
  return Buffer.from([0x40, 0x02, messageId >> 8, messageId & 0xff]);
}

export interface DirectPublishOptions {
  /** Aedes's own limit on topic levels (maxTopicLevels in aedes-adapter.ts). */
  maxTopicLevels: number;
  /** An online client's normal subscription (or one of Aedes's own) matches the topic. */
  hasSubscriber(topic: string): boolean;
  /** A persistent session's normal subscription matches the topic (Aedes queues a copy for it). */
  hasSessionSubscriber(topic: string): boolean;
  /** The checks every publish gets (limits, ACL): an error ends the connection before any PUBACK. */
  refusal(client: Client, topic: string): Error | undefined;
  /** Durable ingest (ingest.ts): calls back once the publish may be acknowledged, in the order accepted. */
  accept(packet: ParsedPublish, done: (err?: Error | null) => void, client: Client): void;
  /** Counted as Aedes's `publish` event would count it. */
  published(packet: ParsedPublish, client: Client): void;
}

/** The PUBLISH taker for takePackets: false leaves the packet to Aedes. */
export function directPublish(opts: DirectPublishOptions) {
  return (client: Client, packet: ParsedPublish, done: (err?: Error | null) => void): boolean => {
    if (!directByFields(packet)) return false;
    // Before any topic matching: the matcher throws on a topic past its level limit.
    const bad = topicRefusal(packet.topic, opts.maxTopicLevels);
    if (bad) {
      done(new Error(bad));
      return true;
    }
    // Somebody besides the shared subscriptions wants it: Aedes routes it.
    if (opts.hasSubscriber(packet.topic) || opts.hasSessionSubscriber(packet.topic)) return false;
    const refused = opts.refusal(client, packet.topic);
    if (refused) {
      done(refused);
      return true;
    }
    opts.accept(
      packet,
      (err) => {
        if (err) return done(err);
        if (packet.qos === 1) writePackets(client, pubackFor(packet.messageId!));
        opts.published(packet, client);
        done();
      },
      client,
    );
    return true;
  };
}
