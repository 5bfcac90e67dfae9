// Who may log in to the broker: users and their encoded passwords from a Mosquitto password file
// (BROKER_PASSWORD_FILE), inline entries (BROKER_PASSWORDS) and BROKER_PASSWORD_<USER> variables,
// merged in that order, so a later source wins for the same user.
import { parsePasswordFile, passwordsFromEnv, readPasswordFile } from './password-hash.js';

export interface LoginSources {
  /** A Mosquitto password_file (npm run broker:passwd writes one). */
  file?: string | undefined;
  /** The same, inline: `user:$7$…` entries separated by commas or newlines. */
  inline?: string | undefined;
  /** Where the BROKER_PASSWORD_<USER> variables are read. */
  env: NodeJS.ProcessEnv;
  allowAnonymous: boolean;
}

/** user → encoded password. Throws, with a message for whoever starts the broker, on a bad source or when nobody could log in. */
export function readLogins({ file, inline, env, allowAnonymous }: LoginSources): Map<string, string> {
  const fromEnv = passwordsFromEnv(env);
  const logins = new Map([...(file ? readPasswordFile(file) : []), ...(inline ? parsePasswordFile(inline.replaceAll(',', '\n')) : []), ...fromEnv]);
  if (logins.size === 0 && !allowAnonymous) {
    throw new Error(
      'no users: set BROKER_PASSWORD_<USER> variables, BROKER_PASSWORD_FILE (npm run broker:passwd writes one) or BROKER_PASSWORDS, or BROKER_ALLOW_ANONYMOUS=true for development',
    );
  }
  return logins;
}
