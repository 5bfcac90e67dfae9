// The keys `npm start` generates once into $DATA_DIR (mode 0600) so that restarts keep them: the
// admin key of catalog and stock, and the load-test key that the gateway lists in GATEWAY_API_KEYS
// (a bucket of its own at the key tier's rates), which `npm run load` picks up by itself.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ADMIN_KEY_FILE = 'admin-api-key';
export const LOAD_TEST_KEY_FILE = 'load-test-api-key';

/** Long enough for the admin routes and production's check (lib/config.ts), and a valid gateway key. */
const MIN_LENGTH = 16;

/** The key stored in $dataDir/<file>, if there is a usable one. */
export function readDevKey(dataDir: string, file: string): string | undefined {
  const path = join(dataDir, file);
  if (!existsSync(path)) return undefined;
  const key = readFileSync(path, 'utf8').trim();
  return key.length >= MIN_LENGTH ? key : undefined;
}

/** The key stored in $dataDir/<file>, generated on first use (base64url: a valid X-Api-Key and gateway key). */
export function devKey(dataDir: string, file: string): string {
  const stored = readDevKey(dataDir, file);
  if (stored) return stored;
  const key = randomBytes(18).toString('base64url');
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(join(dataDir, file), `${key}\n`, { mode: 0o600 });
  return key;
}
