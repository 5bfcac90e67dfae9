// Every place where the broker relies on how Aedes works inside, rather than on its documented
// options, in one file: each reach-in says why it is needed and which test breaks if a new Aedes
// changes what it relies on. Checked against aedes 1.2.0 (lib/client.js, lib/handlers/connect.js).
//
// Elsewhere, reach-ins that predate this file and belong to other parts of the broker: wire.ts
// coalesces a TCP socket's writes (socket.write wrapped), group-queue.ts writes its own PUBLISH
// packets on client.conn.
import type { AedesOptions, Client } from 'aedes';
import type { Duplex } from 'node:stream';
import type { Access } from './auth.js';
import type { ConnectionLimits } from './limits.js';

/**
 * Calls `onChunk` with every chunk of `stream` just before Aedes parses it. Aedes reads its
 * connection in paused mode ('readable', then read(null) in lib/client.js nextBatch), and Node emits
 * 'data' for each chunk read() returns, before returning it: a 'data' listener added after
 * broker.handle() sees every chunk first, and (a 'readable' listener being there) does not switch
 * the stream to flowing mode. So a limit can close the connection before the parser buffers an
 * oversized packet, and a verdict on a packet exists before Aedes's hooks run for it.
 * Breaks: test/broker-limits.test.ts (a 256 MiB CONNECT), the protocol cases of the conformance suite.
 */
export function inboundBytes(stream: Duplex, onChunk: (chunk: Buffer) => void): () => void {
  const listener = (chunk: Buffer | string) => onChunk(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  stream.on('data', listener);
  return () => stream.off('data', listener);
}

const CONNACK = (returnCode: number) => Buffer.from([0x20, 0x02, 0x00, returnCode]);
/** A refused peer that keeps its side open is cut off after this long. */
const LINGER_MS = 1000;

/**
 * Answers a CONNECT with `returnCode` and closes the connection. end() writes the CONNACK out at
 * once (it uncorks what wire.ts corked), so it leaves even when Aedes destroys the connection
 * right after, which it does when a preConnect refuses or its parser rejects the CONNECT.
 */
export function refuseConnect(stream: Duplex, returnCode: number): void {
  stream.end(CONNACK(returnCode));
  setTimeout(() => stream.destroy(), LINGER_MS).unref();
}

/** The client's network address: the TCP peer, or for a WebSocket the peer of its HTTP upgrade. */
export function addressOf(client: Client): string | undefined {
  return (client.conn as { remoteAddress?: string }).remoteAddress ?? client.req?.socket?.remoteAddress;
}

const refusal = (message: string) => Object.assign(new Error(message), { returnCode: 5 as const });

/**
 * The CONNECT decisions, taken in preConnect rather than authenticate. Aedes calls authenticate
 * after init() has given the connection the client id and clean flag it asked for; when
 * authenticate refuses, client.close() runs persistence.cleanIncoming(client) for a clean client
 * and so wipes the QoS 2 state of the session that really holds that id. preConnect runs before
 * init(), while client.id is still null: a refusal there touches no session. preConnect cannot
 * carry a CONNACK return code (Aedes just closes the connection), so refuseConnect() answers first.
 * Aedes's authenticate then only confirms that preConnect admitted the client.
 * Breaks: "a client id belongs to one user" in the conformance suite, test/mqtt-access.test.ts.
 */
export function connectHooks({ limits, access }: { limits: ConnectionLimits; access: Access }): Pick<AedesOptions, 'preConnect' | 'authenticate'> {
  return {
    preConnect(client, packet, callback) {
      const violation = limits.violation(client.conn);
      // Already answered (and logged) on the raw bytes, before Aedes parsed the CONNECT.
      if (violation) return callback(refusal(violation.reason), false);
      const forwarded = client.req?.headers['x-real-ip'];
      const admission = access.admit({
        clientId: packet.clientId,
        username: packet.username,
        password: packet.password,
        will: packet.will,
        address: addressOf(client),
        forwardedFor: typeof forwarded === 'string' ? forwarded : undefined,
      });
      if (!admission.ok) {
        refuseConnect(client.conn as Duplex, admission.returnCode);
        return callback(refusal(admission.reason), false);
      }
      access.bind(client, admission.user);
      callback(null, true);
    },
    authenticate(client, _username, _password, done) {
      if (access.admitted(client)) done(null, true);
      else done(refusal('not admitted'), false);
    },
  };
}
