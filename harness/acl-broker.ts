// A temporary directory for a broker run with the repository's ACL (broker/mosquitto/acl) and a
// password file for some of its users, as the hostile-client tests start it, and their teardown.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { aclFile } from '../broker/mosquitto/run.js';
import { formatPasswordFile } from '../broker/password-hash.js';
import { closeMqtt } from '../lib/mqtt.js';

/** Each test user's password. */
export const password = (user: string) => `${user}-password-for-tests`;

/** A new directory holding a password file for `users`, and the broker environment that uses it with the repository's ACL. */
export function aclBrokerDir(prefix: string, users: readonly string[]): { dir: string; env: Record<string, string> } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  writeFileSync(join(dir, 'passwd'), formatPasswordFile(Object.fromEntries(users.map((u) => [u, password(u)]))));
  return { dir, env: { BROKER_ALLOW_ANONYMOUS: 'false', BROKER_PASSWORD_FILE: join(dir, 'passwd'), BROKER_ACL_FILE: aclFile, DATA_DIR: join(dir, 'data') } };
}

/** Closes the clients, then stops what was started (the broker, Redis…), then removes the directory. */
export async function tearDown(clients: MqttClient[], stops: Array<{ stop(): Promise<unknown> } | undefined>, dir: string | undefined): Promise<void> {
  await Promise.all(clients.map((c) => closeMqtt(c, 1000).catch(() => {})));
  for (const s of stops) await s?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
