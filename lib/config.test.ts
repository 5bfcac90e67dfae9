// Configuration parsing, and production's refusal of weak secrets: placeholders from .env.example
// and short values are refused with a message naming the variable, never showing the value.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigError, MIN_SECRET_LENGTH, commonEnv, mqttEnv, parseConfig, secretProblems } from './config.js';

const strong = 'f3a9c2e7b1d04a6e8c5b7d9f1e3a5c7b';
const example = Object.fromEntries(
  readFileSync(fileURLToPath(new URL('../.env.example', import.meta.url)), 'utf8')
    .split('\n')
    .filter((l) => /^[A-Z_]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
);

describe('secretProblems', () => {
  it('refuses every secret of .env.example as it stands, naming each variable', () => {
    const problems = secretProblems(example);
    const named = Object.keys(example).filter((k) => /PASSWORD|API_KEY/.test(k));
    assert.ok(named.length >= 7, `.env.example lists the secrets: ${named.join(', ')}`);
    assert.deepEqual(problems.map((p) => p.slice(0, p.indexOf(':'))), [...named].sort());
    for (const p of problems) assert.match(p, /placeholder/);
    for (const value of Object.values(example)) assert.ok(!problems.join('\n').includes(value), 'a value is never printed');
  });

  it('refuses short secrets and the usual stand-ins in every secret variable', () => {
    for (const name of ['MQTT_PASSWORD', 'BROKER_PASSWORD_ORDERS', 'ADMIN_API_KEY', 'DASHBOARD_MQTT_PASSWORD']) {
      assert.match(secretProblems({ [name]: 'short-1' }).join(), new RegExp(`^${name}: too short .*7 characters, at least ${MIN_SECRET_LENGTH}`));
      for (const placeholder of ['change-me-please-0123456789', 'CHANGEME0123456789abc', 'password1234567890', 'example-secret-value-1']) {
        assert.match(secretProblems({ [name]: placeholder }).join(), new RegExp(`^${name}: still a placeholder`), placeholder);
      }
      assert.deepEqual(secretProblems({ [name]: strong }), []);
    }
  });

  it('looks only at secret variables', () => {
    assert.deepEqual(secretProblems({ BROKER_PASSWORD_FILE: 'x', MQTT_USERNAME: 'orders', HOME: '/x', PASSWORD_HINT: 'x' }), []);
  });
});

describe('parseConfig', () => {
  const shape = { ...commonEnv, ...mqttEnv };

  it('refuses weak secrets when NODE_ENV=production, with the other problems', () => {
    assert.throws(
      () => parseConfig(shape, { NODE_ENV: 'production', MQTT_PASSWORD: 'change-me-orders', LOG_LEVEL: 'loud' }),
      (err: ConfigError) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.problems.length, 2);
        assert.match(err.message, /LOG_LEVEL/);
        assert.match(err.message, /MQTT_PASSWORD: still a placeholder/);
        return true;
      },
    );
    assert.equal(parseConfig(shape, { NODE_ENV: 'production', MQTT_PASSWORD: strong }).MQTT_PASSWORD, strong);
  });

  it('leaves local runs alone: npm start and the tests generate their own secrets', () => {
    assert.equal(parseConfig(shape, { MQTT_PASSWORD: 'change-me-orders' }).MQTT_PASSWORD, 'change-me-orders');
    assert.equal(parseConfig(shape, { NODE_ENV: 'development', ADMIN_API_KEY: 'short' }).LOG_LEVEL, 'info');
  });

  it('takes LOG_FORMAT json or pretty only', () => {
    assert.equal(parseConfig(shape, { LOG_FORMAT: 'pretty' }).LOG_FORMAT, 'pretty');
    assert.equal(parseConfig(shape, {}).LOG_FORMAT, undefined);
    assert.throws(() => parseConfig(shape, { LOG_FORMAT: 'xml' }), /LOG_FORMAT/);
    assert.throws(() => parseConfig({ N: z.coerce.number().int() }, { N: 'x' }), /N:/);
  });
});
