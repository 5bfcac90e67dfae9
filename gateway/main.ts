// `npm run gateway`: the nginx gateway alone, in the foreground, in front of services started
// elsewhere (same environment variables as `npm start`; see gateway/render.ts).
import { spawn } from 'node:child_process';
import { loadConfig } from '../lib/config.js';
import { INSTALL_HINT } from './nginx.js';
import { gatewayEnv, renderGateway, shellCommand } from './render.js';
import { findProgram } from '../lib/programs.js';

loadConfig(gatewayEnv); // a bad value stops here with exit code 78, naming the variable
const nginx = findProgram('nginx');
if (!nginx) {
  console.error(`gateway: nginx is not installed; ${INSTALL_HINT}`);
  process.exit(1);
}
const gateway = renderGateway();
process.stdout.write(`gateway starting at ${gateway.url} (access log: ${gateway.accessLog})\n${shellCommand(nginx, gateway)}\n`);
const child = spawn(nginx, gateway.args, { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
