// Writes the AsyncAPI document of the MQTT topics (lib/asyncapi.ts), the one the orders service
// serves at /asyncapi.json, for tools that read a file (code generators, documentation sites):
//
//   npm run -s asyncapi > asyncapi.json
//   npm run asyncapi -- --out docs/asyncapi.json [--acl broker/mosquitto/acl]
//
// The ACL is BROKER_ACL_FILE's, as for the broker, unless --acl names another.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { asyncApiFor, DEFAULT_ACL_FILE } from '../lib/asyncapi.js';

const { values } = parseArgs({ options: { out: { type: 'string' }, acl: { type: 'string' } } });
const text = `${JSON.stringify(asyncApiFor(values.acl ?? process.env.BROKER_ACL_FILE ?? DEFAULT_ACL_FILE), null, 2)}\n`;
if (values.out) {
  writeFileSync(values.out, text);
  console.error(`wrote ${values.out}`);
} else {
  process.stdout.write(text);
}
