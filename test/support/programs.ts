// Tests that need a program on this machine (mosquitto, nginx, redis-server, …) ask here first.
//
//   const skip = requireProgram('mosquitto', 'mosquitto');
//   test('…', { skip }, async () => { … });
//
// Returns false when the program is on the PATH (or at /usr/sbin), or else a one-line skip reason
// with the install command. Under CI (CI=true) a missing program fails the run instead of skipping.
import { streamModule } from '../../gateway/render.js';
import { findProgram } from '../../lib/programs.js';

export { findProgram };

/** false when `name` is installed; otherwise a skip reason, or a thrown Error when CI=true. */
export function requireProgram(name: string, aptPackage: string = name): false | string {
  if (findProgram(name)) return false;
  const reason = `${name} is not installed (apt-get install -y ${aptPackage})`;
  if (process.env.CI === 'true') throw new Error(`${reason}; CI must run every test`);
  return reason;
}

/** false when nginx can proxy MQTT over TCP (its stream module); otherwise a skip reason, or a thrown Error when CI=true. */
export function requireNginxStream(): false | string {
  const missing = requireProgram('nginx');
  if (missing) return missing;
  const module = streamModule();
  if (!('missing' in module)) return false;
  if (process.env.CI === 'true') throw new Error(`${module.missing}; CI must run every test`);
  return module.missing;
}
