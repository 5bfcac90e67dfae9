// Password hashing and password files, in Mosquitto's password_file format so that one file serves
// both brokers:
//   user:$7$<iterations>$<salt, base64>$<PBKDF2-SHA512 of the password, 64 bytes, base64>
// as written by mosquitto_passwd 2.0 (101 iterations, 12-byte salt). The older `$6$<salt>$<sha512>`
// lines of Mosquitto 1.x are read too.
import { createHash, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

const ITERATIONS = 101;

export function hashPassword(password: string, { iterations = ITERATIONS, salt = randomBytes(12) } = {}): string {
  const hash = pbkdf2Sync(password, salt, iterations, 64, 'sha512');
  return `$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export function verifyPassword(password: string, encoded: string): boolean {
  const parts = encoded.split('$');
  let expected: Buffer;
  let actual: Buffer;
  if (parts[1] === '7' && parts.length === 5) {
    const iterations = Number(parts[2]);
    if (!Number.isInteger(iterations) || iterations < 1) return false;
    expected = Buffer.from(parts[4]!, 'base64');
    actual = pbkdf2Sync(password, Buffer.from(parts[3]!, 'base64'), iterations, expected.length || 64, 'sha512');
  } else if (parts[1] === '6' && parts.length === 4) {
    expected = Buffer.from(parts[3]!, 'base64');
    actual = createHash('sha512').update(password).update(Buffer.from(parts[2]!, 'base64')).digest();
  } else {
    return false;
  }
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** user → encoded password, from the file's text; blank lines and # comments are skipped. */
export function parsePasswordFile(text: string): Map<string, string> {
  const users = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`password file: expected user:hash, got "${line.slice(0, 40)}"`);
    users.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return users;
}

export const readPasswordFile = (file: string) => parsePasswordFile(readFileSync(file, 'utf8'));

/** The file's text for user → plain password, hashing each one. */
export function formatPasswordFile(passwords: Record<string, string>): string {
  return Object.entries(passwords)
    .map(([user, password]) => `${user}:${hashPassword(password)}\n`)
    .join('');
}

/**
 * Plain passwords from the environment, `BROKER_PASSWORD_<USER>=…` (user in lower case), hashed
 * here at start: the container way, where secrets arrive as variables (compose's .env).
 */
export function passwordsFromEnv(env: NodeJS.ProcessEnv): Map<string, string> {
  const users = new Map<string, string>();
  for (const [key, value] of Object.entries(env)) {
    const match = /^BROKER_PASSWORD_([A-Z0-9_]+)$/.exec(key);
    if (!match || key === 'BROKER_PASSWORD_FILE' || !value) continue;
    if (value.length < 8) throw new Error(`${key}: a password needs at least 8 characters`);
    users.set(match[1]!.toLowerCase(), hashPassword(value));
  }
  return users;
}
