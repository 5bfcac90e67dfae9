// `npm run -s processes`: the table of every process (ports and their npm start variables, MQTT
// user and client ids, shared groups, gateway route), printed from the one declaration,
// lib/processes.ts, rather than copied into the README where it would drift.
import { PROCESS_LIST, processTable } from '../lib/processes.js';

process.stdout.write(`${processTable(PROCESS_LIST)}\n`);
