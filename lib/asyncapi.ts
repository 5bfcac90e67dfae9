// The AsyncAPI 3 document of the broker's topics, generated (never written by hand) from what the
// code itself uses: channels and message schemas from the event catalogue (lib/topics.ts, lib/stats.ts)
// and its zod schemas, who publishes and reads what from the ACL the broker enforces (broker/acl.ts
// reading broker/mosquitto/acl), shared-subscription groups from its `#@ group` rules. The orders
// service serves it at /asyncapi.json (through the gateway); `npm run -s asyncapi` prints it.
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { Acl, filterCovers } from '../broker/acl.js';
import { TOPIC_ROOT, envelopeSchema, type EventDefinition } from './events.js';
import { STATS_DELIVERY, STATS_PUBLISHERS, statsSnapshot, statsTopic } from './stats.js';
import * as catalogue from './topics.js';
import { PUBLIC_ROOT } from './topics.js';

export const ASYNCAPI_VERSION = '3.1.0';

/** The ACL the broker reads unless BROKER_ACL_FILE says otherwise (broker/main.ts has the same default). */
export const DEFAULT_ACL_FILE = fileURLToPath(new URL('../broker/mosquitto/acl', import.meta.url));

/** Every CloudEvent goes out with QoS 1 (lib/mqtt.ts publishEvent; test/asyncapi.test.ts checks it on the wire). */
const EVENT_QOS = 1;
const BINDING_VERSION = '0.2.0';
/** The broker publishes its own figures: it is no ACL user. */
const BROKER_ITSELF = 'broker';

type JsonSchema = Record<string, unknown>;

/** One channel of the document: a topic (or a family of topics, one per parameter value) and its one message. */
export interface Channel {
  /** Channel, message and operation name: from the CloudEvents type (nameOf), or stats… */
  id: string;
  /** The MQTT filter matching every topic of the channel (a `+` per parameter). */
  filter: string;
  /** The filter with `{name}` for each `+`, as AsyncAPI writes it. */
  address: string;
  parameters: Record<string, { description: string; enum?: string[]; location?: string }>;
  title: string;
  summary: string;
  contentType: string;
  payload: JsonSchema;
  example: unknown;
  qos: 0 | 1;
  retain: boolean;
}

/** A zod schema as the JSON Schema (draft 7, which AsyncAPI schemas extend) that a message must satisfy when it is read. */
export function jsonSchemaOf(schema: z.ZodType): JsonSchema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { target: 'draft-7', io: 'input' }) as JsonSchema;
  return rest;
}

const isEvent = (value: unknown): value is EventDefinition =>
  typeof value === 'object' && value !== null && 'topic' in value && 'type' in value && 'data' in value && 'example' in value;

/** `woodytoys.stock.movement-processed` → `stockMovementProcessed`: channel and message names come from the CloudEvents type. */
export const nameOf = (type: string) =>
  type
    .replace(/^woodytoys\./, '')
    .split(/[.-]/)
    .map((word, i) => (i === 0 ? word : word.charAt(0).toUpperCase() + word.slice(1)))
    .join('');

/** Each event of lib/topics.ts once, however many names export it. */
export function catalogueEvents(): { id: string; def: EventDefinition }[] {
  const events = new Set((Object.values(catalogue) as unknown[]).filter(isEvent));
  return [...events].map((def) => ({ id: nameOf(def.type), def }));
}

/** `a/+/b` with names [x] → `a/{x}/b`. */
function addressOf(filter: string, names: string[]): string {
  let i = 0;
  const address = filter.replace(/(^|\/)\+(?=\/|$)/g, (_m, lead: string) => `${lead}{${names[i++] ?? 'level'}}`);
  if (i !== names.length) throw new Error(`${filter}: ${i} + levels, but ${names.length} parameter names`);
  return address;
}

function eventChannel(id: string, def: EventDefinition): Channel {
  const parameters = Object.fromEntries(
    Object.entries(def.parameters ?? {}).map(([name, description]) => {
      // When the data repeats the topic's level (a product id), say where: code generators use it.
      const shape = def.data instanceof z.ZodObject ? (def.data.shape as Record<string, unknown>) : {};
      return [name, { description, ...(name in shape ? { location: `$message.payload#/data/${name}` } : {}) }];
    }),
  );
  const message = envelopeSchema.extend({ type: z.literal(def.type), data: def.data });
  const example = {
    specversion: '1.0',
    id: '7c9e6679-7425-40de-944b-e07fc1f90ae7',
    source: `/${TOPIC_ROOT}/<producer>`,
    type: def.type,
    time: '2025-01-15T10:30:00.000Z',
    datacontenttype: 'application/json',
    data: def.data.parse(def.example),
  };
  return {
    id,
    filter: def.topic,
    address: addressOf(def.topic, Object.keys(parameters)),
    parameters,
    title: def.type,
    summary: def.summary,
    contentType: 'application/cloudevents+json',
    payload: jsonSchemaOf(message),
    example: message.parse(example),
    qos: EVENT_QOS,
    retain: def.retain ?? false,
  };
}

/** The live figures of lib/stats.ts: plain JSON snapshots, not CloudEvents. */
function statsChannels(): Channel[] {
  const common = {
    contentType: 'application/json',
    payload: { ...jsonSchemaOf(statsSnapshot), description: "`name` and `at`, then the publisher's own counts and rates (never anything about a customer)." },
    qos: STATS_DELIVERY.qos,
    retain: STATS_DELIVERY.retain,
  };
  const processFilter = statsTopic('+');
  const workerFilter = statsTopic('workers/+');
  return [
    {
      id: 'statsProcess',
      filter: processFilter,
      address: addressOf(processFilter, ['process']),
      parameters: { process: { description: 'the process whose figures these are', enum: [...STATS_PUBLISHERS], location: '$message.payload#/name' } },
      title: 'live figures of a process',
      summary: 'Public: the live figures of the broker, the orders service or the ERP sandbox, once a second, retained (the last one waits for a new subscriber).',
      example: statsSnapshot.parse({ name: 'orders', at: '2025-01-15T10:30:00.000Z', counts: { pending: 3, confirmed: 120, rejected: 4 }, outboxPending: 0 }),
      ...common,
    },
    {
      id: 'statsWorker',
      filter: workerFilter,
      address: addressOf(workerFilter, ['workerId']),
      parameters: { workerId: { description: "the worker's WORKER_ID" } },
      title: 'live figures of a worker',
      summary: 'Public: the live figures of one worker (leases, pace, backlog), once a second, retained.',
      example: statsSnapshot.parse({ name: 'workers/worker-1', at: '2025-01-15T10:30:00.000Z', workerId: 'worker-1', leasedPartitions: 10, partitions: 20, capacityRu: 100 }),
      ...common,
    },
  ];
}

/** Every channel of the document: the event catalogue, then the live figures. */
export function channels(): Channel[] {
  return [...catalogueEvents().map(({ id, def }) => eventChannel(id, def)), ...statsChannels()];
}

/** The concrete topics of a channel whose parameters are all enumerated, else its filter (read as a topic name by the ACL). */
function topicsOf(channel: Channel): string[] {
  let topics = [channel.address];
  for (const [name, p] of Object.entries(channel.parameters)) {
    topics = topics.flatMap((t) => (p.enum ?? ['+']).map((v) => t.replace(`{${name}}`, v)));
  }
  return topics;
}

export interface Access {
  user: string;
  action: 'send' | 'receive';
  channel: Channel;
  /** For a reader in a shared group: the group, from the ACL's `#@ group` rules. */
  group?: string;
}

/**
 * Who may publish and read each channel, from the ACL: a user publishes a channel when it may
 * publish one of its topics, and reads it when its read rules cover the channel's whole filter.
 * A channel nobody may publish is an error, except the broker's own figures.
 */
export function accessOf(acl: Acl, all: Channel[] = channels()): Access[] {
  const access: Access[] = [];
  for (const channel of all) {
    let writers = 0;
    for (const [user, clientIds] of acl.users) {
      const who = { username: user, clientId: clientIds.find((id) => !id.endsWith('*')) ?? user };
      if (topicsOf(channel).some((t) => acl.canPublish(who, t))) {
        access.push({ user, action: 'send', channel });
        writers++;
      }
      if (acl.canSubscribe(who, channel.filter, true)) {
        const group = acl.groupRules.find((r) => r.user === user && filterCovers(r.filter, channel.filter))?.group;
        access.push({ user, action: 'receive', channel, ...(group ? { group } : {}) });
      }
    }
    if (topicsOf(channel).includes(statsTopic(BROKER_ITSELF))) access.push({ user: BROKER_ITSELF, action: 'send', channel });
    else if (writers === 0) throw new Error(`no user of the ACL may publish ${channel.address}`);
  }
  return access;
}

const ref = (path: string) => ({ $ref: `#/${path}` });
const isPublic = (channel: Channel) => filterCovers(`${PUBLIC_ROOT}/#`, channel.filter);

/** The description of one ACL user, from what the ACL lets it do. */
function userTag(user: string, clientIds: readonly string[], access: Access[], bounds: { queue: number | undefined; sessions: number | undefined; filters: number | undefined }) {
  const mine = access.filter((a) => a.user === user);
  const groups = [...new Set(mine.flatMap((a) => (a.group ? [a.group] : [])))];
  const display = mine.every((a) => a.action === 'receive' && isPublic(a.channel));
  const kind = display
    ? 'Read-only login for displays and the dashboard; it is public (the gateway serves it at /config.json), so it reads the public namespace only, joins no group and publishes nothing.'
    : `Internal: the ${user} service's login.`;
  return {
    name: user,
    description: [
      `MQTT user \`${user}\`. ${kind}`,
      `Client ids: ${clientIds.map((id) => `\`${id}\``).join(', ') || 'none'} (a client id belongs to one user; another user's CONNECT with it is refused).`,
      groups.length ? `Shared groups: ${groups.map((g) => `\`$share/${g}/…\``).join(', ')} (members hold persistent sessions, clean=false).` : '',
      bounds.queue === undefined ? '' : `A persistent session (clean=false) keeps at most ${bounds.queue} messages not yet acknowledged; later ones are not kept for it (a connected client still gets them live).`,
      bounds.sessions === undefined
        ? ''
        : `The login keeps at most ${bounds.sessions} persistent sessions: one more ends the one whose client has been away the longest (that client comes back to no session, CONNACK session present 0, and subscribes again); with every one connected, the subscription is refused (SUBACK 0x80).`,
      bounds.filters === undefined ? '' : `Each client holds at most ${bounds.filters} topic filters at once; one more is refused (SUBACK 0x80).`,
    ]
      .filter(Boolean)
      .join(' '),
    'x-client-ids': clientIds,
  };
}

function operation(a: Access) {
  const { channel } = a;
  const mqtt = a.action === 'send' ? { qos: channel.qos, retain: channel.retain } : { qos: channel.qos };
  const shared = a.group ? catalogue.shareOf(a.group, channel.filter) : undefined;
  const how =
    a.action === 'send'
      ? `\`${a.user}\` publishes on \`${channel.address}\` with QoS ${channel.qos}${channel.retain ? ', retained' : ''}.`
      : shared
        ? `\`${a.user}\` reads \`${channel.filter}\` in the shared group \`${a.group}\`: subscribe to \`${shared}\` (each message goes to one member of the group).`
        : `\`${a.user}\` may subscribe to \`${channel.filter}\`${channel.retain ? ' (retained: the current value arrives at once)' : ''}.`;
  return {
    action: a.action,
    channel: ref(`channels/${channel.id}`),
    summary: how,
    tags: [{ name: a.user }],
    bindings: { mqtt: { ...mqtt, bindingVersion: BINDING_VERSION } },
    messages: [ref(`channels/${channel.id}/messages/${channel.id}`)],
    ...(shared ? { 'x-shared-subscription': { group: a.group, filter: shared } } : {}),
  };
}

export interface AsyncApiOptions {
  acl: Acl;
  /** host:port of the MQTT listener and of the gateway, as the document's server variables' defaults. */
  brokerHost?: string;
  gatewayHost?: string;
}

/** The whole document, as plain JSON. */
export function buildAsyncApi({ acl, brokerHost = '127.0.0.1:1883', gatewayHost = '127.0.0.1:8080' }: AsyncApiOptions) {
  const all = channels();
  const access = accessOf(acl, all);
  const users = [...acl.users].filter(([user]) => access.some((a) => a.user === user));
  const tags = [
    ...users.map(([user, ids]) => userTag(user, ids, access, { queue: acl.queueLimit(user), sessions: acl.sessionLimit(user), filters: acl.filterLimit(user) })),
    { name: BROKER_ITSELF, description: 'The broker itself, publishing its own figures (no login).' },
  ];
  const servers = { broker: ref('servers/broker'), gateway: ref('servers/gateway') };
  return {
    asyncapi: ASYNCAPI_VERSION,
    id: 'urn:woodytoys:events',
    info: {
      title: 'Woodytoys events',
      version: '1.0.0',
      description: [
        'The MQTT topics of the Woodytoys backend, generated from the event catalogue the producers and consumers import (lib/topics.ts, lib/stats.ts) and the ACL the broker enforces (broker/mosquitto/acl).',
        '',
        `**Displays** log in as the read-only \`viewer\` (its login is public: the gateway serves it at \`/config.json\`) and read \`${PUBLIC_ROOT}/#\`: order statuses under an anonymous reference, stock levels, products, live figures. Nothing personal is ever published there.`,
        '',
        `**Internal users** (one MQTT user per service) publish and read the service topics under \`${TOPIC_ROOT}/\`; each operation is tagged with the user the ACL allows to do it. Readers in a shared group subscribe to \`$share/<group>/<filter>\`, so each message goes to one member of the group.`,
        '',
        'Every event is a CloudEvents 1.0 JSON envelope (structured mode: `specversion`, `id`, `source`, `type`, `time`, `subject`, `datacontenttype`, `data`) published with QoS 1; consumers are idempotent on `id`. Retained topics (stock levels, products, live figures) give a new subscriber the current value at once. A message a consumer cannot process goes to `woodytoys/deadletter/<consumer>` with the reason.',
      ].join('\n'),
      tags,
    },
    defaultContentType: 'application/cloudevents+json',
    servers: {
      broker: {
        host: '{host}',
        protocol: 'mqtt',
        protocolVersion: '3.1.1',
        title: 'The broker (MQTT over TCP)',
        description: 'For the services and workers, on the internal network.',
        variables: { host: { default: brokerHost, description: 'host:port of the MQTT listener (MQTT_PORT)' } },
        security: [ref('components/securitySchemes/login')],
      },
      gateway: {
        host: '{host}',
        protocol: 'ws',
        pathname: '/mqtt',
        title: 'MQTT over WebSocket through the gateway',
        description: 'For displays and the dashboard (rate- and connection-limited per client by nginx).',
        variables: { host: { default: gatewayHost, description: 'host:port of the gateway' } },
        security: [ref('components/securitySchemes/login')],
      },
    },
    channels: Object.fromEntries(
      all.map((c) => [
        c.id,
        {
          address: c.address,
          title: c.title,
          description: c.summary,
          messages: { [c.id]: ref(`components/messages/${c.id}`) },
          servers: isPublic(c) ? [servers.broker, servers.gateway] : [servers.broker],
          ...(Object.keys(c.parameters).length ? { parameters: c.parameters } : {}),
        },
      ]),
    ),
    operations: Object.fromEntries(access.map((a) => [`${a.user}_${a.action}_${a.channel.id}`, operation(a)])),
    components: {
      messages: Object.fromEntries(
        all.map((c) => [
          c.id,
          {
            name: c.id,
            title: c.title,
            summary: c.summary,
            contentType: c.contentType,
            payload: c.payload,
            examples: [{ name: c.id, payload: c.example }],
          },
        ]),
      ),
      securitySchemes: {
        login: {
          type: 'userPassword',
          description: "MQTT username and password: one user per service (see the operations' tags); displays use `viewer`.",
        },
      },
    },
  };
}

export type AsyncApiDocument = ReturnType<typeof buildAsyncApi>;

/** The document for the ACL in `file`. */
export const asyncApiFor = (file: string = DEFAULT_ACL_FILE, options: Omit<AsyncApiOptions, 'acl'> = {}) => buildAsyncApi({ acl: Acl.read(file), ...options });
