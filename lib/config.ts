// Configuration from environment variables, parsed once with zod. A bad value stops the process
// with one clear line per problem instead of failing later somewhere deep inside. In production
// (NODE_ENV=production, which the image sets) a secret that is short or still the placeholder of
// .env.example is such a bad value too; local runs (`npm start`, tests) generate their own.
import { z } from 'zod';
import { LOG_FORMATS } from './log.js';

export const port = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);
export const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);
export const bool = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .default(fallback ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes');
export const url = (fallback: string) => z.url().default(fallback);

/** Settings every process shares. */
export const commonEnv = {
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Unset: pretty on a terminal, JSON otherwise (lib/log.ts reads it). */
  LOG_FORMAT: z.enum(LOG_FORMATS).optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  HTTP_HOST: z.string().min(1).default('127.0.0.1'),
};

/** Settings of every process that talks to the broker. */
export const mqttEnv = {
  MQTT_URL: z
    .string()
    .regex(/^(mqtt|mqtts|ws|wss|tcp):\/\/.+/, 'must be an mqtt://, mqtts://, ws:// or wss:// URL')
    .default('mqtt://127.0.0.1:1883'),
  MQTT_USERNAME: z.string().min(1).optional(),
  MQTT_PASSWORD: z.string().min(1).optional(),
  /** Stable client-id prefix: persistent sessions survive restarts only if the id does. */
  MQTT_CLIENT_ID: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'letters, digits and _.:- only (1-64)').optional(),
};

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Secrets are at least this long in production (`openssl rand -hex 16` gives 32). */
export const MIN_SECRET_LENGTH = 16;
/** The variables that hold a secret: a service's broker login, a broker user's password, the admin key. */
const SECRET_VARIABLE = /^(MQTT_PASSWORD|MQTT_PASSWORD_[A-Z0-9_]+|BROKER_PASSWORD_(?!FILE$)[A-Z0-9_]+|ADMIN_API_KEY|DASHBOARD_MQTT_PASSWORD)$/;
/** Values that say "fill me in": .env.example's change-me-… and the usual stand-ins. */
const PLACEHOLDER = /^(change-?me|changeit|replace-?me|placeholder|example|secret|password|xxx+)/i;

export const isProduction = (env: NodeJS.ProcessEnv) => env.NODE_ENV === 'production';

/**
 * The secrets in `env` that production must refuse, one problem each, naming the variable (never
 * its value). Pure, so it is tested on its own; parseConfig applies it when NODE_ENV=production.
 */
export function secretProblems(env: NodeJS.ProcessEnv): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!SECRET_VARIABLE.test(name) || value === undefined || value === '') continue;
    if (PLACEHOLDER.test(value)) problems.push(`${name}: still a placeholder (as in .env.example); set a real secret in .env`);
    else if (value.length < MIN_SECRET_LENGTH) problems.push(`${name}: too short for production (${value.length} characters, at least ${MIN_SECRET_LENGTH})`);
  }
  return problems.sort();
}

/**
 * Parses `env` against `shape`; empty strings count as unset so `FOO=` falls back to the default.
 * In production, weak secrets anywhere in `env` are refused as well.
 */
export function parseConfig<T extends z.ZodRawShape>(shape: T, env: NodeJS.ProcessEnv = process.env) {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = z.object(shape).safeParse(present);
  const problems = result.success ? [] : result.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`);
  if (isProduction(env)) problems.push(...secretProblems(env));
  if (!result.success || problems.length > 0) throw new ConfigError(problems);
  return result.data;
}

/** Like parseConfig, but a bad value ends the process with exit code 78 (EX_CONFIG). */
export function loadConfig<T extends z.ZodRawShape>(shape: T, env: NodeJS.ProcessEnv = process.env) {
  try {
    return parseConfig(shape, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`${process.argv[1] ?? 'process'}: ${err.message}`);
    process.exit(78);
  }
}
