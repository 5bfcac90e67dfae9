// The broker's users from its three password sources: merged in order (file, inline, environment),
// a later source winning for the same user; a bad source or nobody to log in stops the start.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLogins } from './logins.js';
import { formatPasswordFile, verifyPassword } from './password-hash.js';

const dir = mkdtempSync(join(tmpdir(), 'logins-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('broker logins', () => {
  it('merge the password file, the inline entries and BROKER_PASSWORD_<USER>, the later winning', () => {
    const file = join(dir, 'passwd');
    writeFileSync(file, formatPasswordFile({ alice: 'from-the-file', bob: 'from-the-file' }));
    const inline = formatPasswordFile({ bob: 'inline-bob', carol: 'inline-carol' }).trim().split('\n').join(',');
    const logins = readLogins({ file, inline, env: { BROKER_PASSWORD_CAROL: 'env-carol-1', BROKER_PASSWORD_FILE: file }, allowAnonymous: false });
    assert.deepEqual([...logins.keys()].sort(), ['alice', 'bob', 'carol']);
    assert.ok(verifyPassword('from-the-file', logins.get('alice')!));
    assert.ok(verifyPassword('inline-bob', logins.get('bob')!), 'inline over the file');
    assert.ok(verifyPassword('env-carol-1', logins.get('carol')!), 'the environment over inline');
    assert.ok(!verifyPassword('inline-carol', logins.get('carol')!));
  });

  it('refuse a start with nobody to log in, unless anonymous clients are allowed', () => {
    assert.throws(() => readLogins({ env: {}, allowAnonymous: false }), /no users: set BROKER_PASSWORD_<USER> variables, BROKER_PASSWORD_FILE/);
    assert.equal(readLogins({ env: {}, allowAnonymous: true }).size, 0);
  });

  it('refuse a bad source with what is wrong', () => {
    assert.throws(() => readLogins({ env: { BROKER_PASSWORD_ORDERS: 'short' }, allowAnonymous: true }), /BROKER_PASSWORD_ORDERS: a password needs at least 8 characters/);
    assert.throws(() => readLogins({ inline: 'no-colon-here', env: {}, allowAnonymous: true }), /expected user:hash/);
    assert.throws(() => readLogins({ file: join(dir, 'missing'), env: {}, allowAnonymous: true }), /ENOENT/);
  });
});
