// The command that writes a broker password file (Mosquitto's format, read by both brokers):
//
//   npm run broker:passwd -- [file] [user=password …]
//
// Passwords come from the arguments or from BROKER_PASSWORD_<USER> variables (e.g.
// BROKER_PASSWORD_ORDERS); the file defaults to BROKER_PASSWORD_FILE, else data/passwd.
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { MQTT_USERS } from '../lib/processes.js';
import { formatPasswordFile } from './password-hash.js';


const args = process.argv.slice(2);
const file = args[0] && !args[0].includes('=') ? args.shift()! : (process.env.BROKER_PASSWORD_FILE ?? 'data/passwd');
const passwords: Record<string, string> = {};
for (const user of MQTT_USERS) {
  const password = process.env[`BROKER_PASSWORD_${user.toUpperCase()}`];
  if (password) passwords[user] = password;
}
for (const arg of args) {
  const eq = arg.indexOf('=');
  if (eq <= 0 || eq === arg.length - 1) {
    console.error(`broker:passwd: expected user=password, got "${arg}"`);
    process.exit(64);
  }
  passwords[arg.slice(0, eq)] = arg.slice(eq + 1);
}
if (Object.keys(passwords).length === 0) {
  console.error(`usage: npm run broker:passwd -- [file] user=password …  (or set BROKER_PASSWORD_<USER> for ${MQTT_USERS.join(', ')})`);
  process.exit(64);
}
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, formatPasswordFile(passwords), { mode: 0o600 });
process.stdout.write(`wrote ${Object.keys(passwords).length} users to ${file}: ${Object.keys(passwords).join(', ')}\n`);
