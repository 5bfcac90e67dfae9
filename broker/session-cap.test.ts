// The "#@ sessions" bound's decisions (session-cap.ts) on a store and a set of connected clients
// kept here: which session is ended, when a subscription is refused, what is not counted.
// test/broker-hostile.test.ts shows the same on a running broker with the repository's ACL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionCap } from './session-cap.js';

function setUp(limit = 3) {
  const stored = new Set<string>();
  const connected = new Set<string>();
  const ended: string[] = [];
  const cap = new SessionCap({
    limitOf: (id) => (id.startsWith('viewer-') ? { user: 'viewer', limit } : undefined),
    holds: (id) => stored.has(id),
    isConnected: (id) => connected.has(id),
    end: (id) => {
      stored.delete(id);
      ended.push(id);
    },
  });
  /** A persistent client connects and subscribes (as the broker asks the cap first); undefined when it may. */
  const subscribe = (id: string) => {
    connected.add(id);
    const refusal = cap.admit(id);
    if (!refusal) stored.add(id);
    return refusal;
  };
  const leave = (id: string) => {
    connected.delete(id);
    cap.away(id);
  };
  return { cap, stored, connected, ended, subscribe, leave };
}

test('one session more ends the one whose client went away first; a user without a bound is not counted', () => {
  const { cap, ended, subscribe, leave } = setUp();
  for (const id of ['viewer-a', 'viewer-b', 'viewer-c']) assert.equal(subscribe(id), undefined);
  leave('viewer-b');
  leave('viewer-a');
  leave('viewer-c');
  assert.equal(subscribe('viewer-d'), undefined);
  assert.deepEqual(ended, ['viewer-b'], 'b went away first');
  assert.equal(subscribe('viewer-a'), undefined, 'a comes back: its session is still there, nothing ended');
  assert.deepEqual(ended, ['viewer-b']);
  leave('viewer-a');
  assert.equal(subscribe('viewer-e'), undefined);
  assert.deepEqual(ended, ['viewer-b', 'viewer-c'], 'a went away again, after c: c is now the oldest away');
  for (let i = 0; i < 50; i++) assert.equal(subscribe(`orders-${i}`), undefined);
  assert.deepEqual(cap.counts(), new Map([['viewer', 3]]));
});

test('with every session connected, one more is refused and none is ended', () => {
  const { ended, subscribe, leave } = setUp(2);
  subscribe('viewer-a');
  subscribe('viewer-b');
  assert.match(subscribe('viewer-c') ?? '', /user viewer keeps 2 persistent sessions, every one connected \("#@ sessions" in the ACL\)/);
  assert.deepEqual(ended, []);
  leave('viewer-a');
  assert.equal(subscribe('viewer-c'), undefined, 'once one is away, it makes room');
  assert.deepEqual(ended, ['viewer-a']);
});

test('what the store no longer holds is not counted, and sessions found at start count as away, in the store order', () => {
  const { cap, stored, ended, subscribe, leave } = setUp(2);
  stored.add('viewer-old-1').add('viewer-old-2').add('viewer-old-3');
  cap.seed(['viewer-old-1', 'viewer-old-2', 'viewer-old-3', 'orders-x']);
  assert.deepEqual(cap.counts(), new Map([['viewer', 3]]), 'over the bound (it was lowered): counted as found');
  assert.equal(subscribe('viewer-new'), undefined);
  assert.deepEqual(ended, ['viewer-old-1', 'viewer-old-2'], 'ended until there is room, the first found first');
  // A clean start took viewer-old-3's session (the store holds nothing for it): room without ending anything.
  stored.delete('viewer-old-3');
  leave('viewer-new');
  assert.equal(subscribe('viewer-next'), undefined);
  assert.deepEqual(ended, ['viewer-old-1', 'viewer-old-2']);
  assert.deepEqual(cap.counts(), new Map([['viewer', 2]]));
  stored.delete('viewer-next');
  leave('viewer-next');
  assert.deepEqual(cap.counts(), new Map([['viewer', 1]]), 'a session the store no longer holds, its client gone, is not reported');
});
