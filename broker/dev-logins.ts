// Development logins for `npm start` and the tests: every MQTT user of the process declaration
// (lib/processes.ts; broker/mosquitto/acl gives each its rights), each with a random password, kept
// in <DATA_DIR>/mqtt-credentials.json (mode 0600) so restarts keep them. Production sets them from
// the environment instead (.env).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { MQTT_USERS, type MqttUser } from '../lib/processes.js';
import { formatPasswordFile } from './password-hash.js';

export const SERVICE_USERS = MQTT_USERS;
export type ServiceUser = MqttUser;
export type Credentials = Record<ServiceUser, string>;

const stored = z.object(Object.fromEntries(SERVICE_USERS.map((u) => [u, z.string().regex(/^[a-f0-9]{32}$/).optional()])) as Record<ServiceUser, z.ZodOptional<z.ZodString>>);

export const newPassword = () => randomBytes(16).toString('hex');

/** The passwords in <dataDir>/mqtt-credentials.json, created on first use (a user added since gets one then). */
export function devCredentials(dataDir: string): Credentials {
  const file = join(dataDir, 'mqtt-credentials.json');
  let known: Partial<Credentials> = {};
  if (existsSync(file)) {
    const parsed = stored.safeParse(JSON.parse(readFileSync(file, 'utf8')));
    if (parsed.success) known = parsed.data;
    if (SERVICE_USERS.every((u) => known[u])) return known as Credentials;
  }
  const fresh = Object.fromEntries(SERVICE_USERS.map((u) => [u, known[u] ?? newPassword()])) as Credentials;
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(fresh, null, 2)}\n`, { mode: 0o600 });
  return fresh;
}

/** BROKER_PASSWORDS for the broker: every user's hashed entry, comma-separated. */
export const brokerPasswords = (credentials: Credentials) => formatPasswordFile(credentials).trim().split('\n').join(',');

/** The environment a process needs to log in as `user`. */
export const mqttLogin = (credentials: Credentials, user: ServiceUser) => ({ MQTT_USERNAME: user, MQTT_PASSWORD: credentials[user] });
