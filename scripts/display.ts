// A shop display written from the AsyncAPI document alone, as a third party would: it reads
// /asyncapi.json with the AsyncAPI project's parser, subscribes (MQTT over WebSocket, through the
// gateway) to every channel the viewer login may read, with the QoS the document gives, and checks
// each message against the document's payload schema with ajv.
//
//   npm run display -- [gateway URL, default http://127.0.0.1:$GATEWAY_PORT] [--count N]
//
// It prints one line per message (✓ valid, ✗ with the schema's complaint) and, with --count,
// stops after N messages: exit code 0 if every one was valid.
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { Parser, type OperationInterface } from '@asyncapi/parser';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import mqtt from 'mqtt';
import { topicMatches } from '../lib/events.js';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { count: { type: 'string' } } });
const gateway = positionals[0] ?? `http://127.0.0.1:${process.env.GATEWAY_PORT ?? 8080}`;
const count = values.count === undefined ? Infinity : Number(values.count);

// 1. The document, parsed and validated by @asyncapi/parser.
const { document, diagnostics } = await new Parser().parse(await (await fetch(`${gateway}/asyncapi.json`)).text());
if (!document) {
  console.error(diagnostics.map((d) => `${d.path.join('/')}: ${d.message}`).join('\n'));
  process.exit(1);
}
// The display's login is public: the gateway serves it to the dashboard.
const login = (await (await fetch(`${gateway}/config.json`)).json()) as { path: string; username: string; password: string };

// 2. What this login may read: the receive operations tagged with its user.
const tagged = (op: OperationInterface) => op.tags().all().some((t) => t.name() === login.username);
const ajv = new Ajv({ allErrors: true, strict: false }); // strict off: the parser adds x-parser-* keys to schemas
addFormats.default(ajv);
const reads = document
  .operations()
  .filterByReceive()
  .filter(tagged)
  .map((op) => {
    const channel = op.channels().all()[0]!;
    const message = op.messages().all()[0]!;
    return {
      name: channel.id(),
      filter: channel.address()!.replace(/\{[^}]+\}/g, '+'),
      qos: ((op.bindings().get('mqtt')?.value() as { qos?: 0 | 1 | 2 } | undefined)?.qos ?? 0) as 0 | 1 | 2,
      validate: ajv.compile(message.payload()!.json()) as ValidateFunction,
    };
  });
if (reads.length === 0) {
  console.error(`the document gives user ${login.username} nothing to read`);
  process.exit(1);
}

// 3. Subscribe with a client id of the login's own (the tag says which) and check every message.
const ids = (document.info().tags().all().find((t) => t.name() === login.username)?.extensions().get('x-client-ids')?.value() ?? []) as string[];
const prefix = ids.find((id) => id.endsWith('*'))?.slice(0, -1);
const clientId = prefix ? `${prefix}display-${randomBytes(4).toString('hex')}` : ids[0];
const url = new URL(login.path, gateway.replace(/^http/, 'ws')).toString();
const client = mqtt.connect(url, { username: login.username, password: login.password, clientId, clean: true, reconnectPeriod: 0 });
let seen = 0;
let invalid = 0;
client.on('error', (err) => {
  if (seen >= count) return; // acknowledgements still in flight as the connection ends
  console.error(`mqtt: ${err.message}`);
  process.exit(1);
});
client.on('connect', () => {
  // Each filter at the QoS the document gives it.
  client.subscribe(Object.fromEntries(reads.map((r) => [r.filter, { qos: r.qos }])), (err) => err && console.error(`subscribe: ${err.message}`));
  console.log(`subscribed as ${login.username} (${clientId}) to ${reads.map((r) => `${r.filter} (QoS ${r.qos})`).join(', ')}`);
});

client.on('message', (topic, payload, packet) => {
  if (seen >= count) return; // ending: what still arrives is not counted
  const read = reads.find((r) => topicMatches(r.filter, topic));
  let ok = false;
  let why = 'no channel of the document';
  if (read) {
    try {
      ok = read.validate(JSON.parse(payload.toString()));
      why = ajv.errorsText(read.validate.errors);
    } catch {
      why = 'not JSON';
    }
  }
  if (!ok) invalid++;
  console.log(`${ok ? '✓' : '✗'} ${topic} ${read?.name ?? ''} QoS ${packet.qos}${packet.retain ? ' retained' : ''}${ok ? '' : `: ${why}`}`);
  if (++seen >= count) {
    client.end(true, {}, () => process.exit(invalid === 0 ? 0 : 1));
  }
});
