// What tests of the real nginx gateway share beyond starting it (gateway/nginx.ts).
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A runtime directory for nginx. Run as root, nginx's workers are `nobody`: they must be able to
 * enter it to write request bodies and responses to temporary files (mkdtemp makes it 0700).
 */
export function gatewayDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return dir;
}
