// Configuration from environment variables, parsed once with zod. A bad value stops the process
// with one clear line per problem instead of failing later somewhere deep inside.
import { z } from 'zod';

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

/** Parses `env` against `shape`; empty strings count as unset so `FOO=` falls back to the default. */
export function parseConfig<T extends z.ZodRawShape>(shape: T, env: NodeJS.ProcessEnv = process.env) {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = z.object(shape).safeParse(present);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`));
  }
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
