// Types for the part of aedes-persistence-redis the broker uses (the package ships none): its
// async persistence class, which Aedes 1.x needs (persistence.setup must be an async function).
declare module 'aedes-persistence-redis/asyncPersistence.js' {
  import type { Redis } from 'ioredis';

  export default class AsyncRedisPersistence {
    constructor(opts: { conn: Redis; maxSessionDelivery?: number });
    setup(broker: { id: string }): Promise<void>;
    addSubscriptions(client: { id: string }, subs: object[]): Promise<void>;
    removeSubscriptions(client: { id: string }, topics: string[]): Promise<void>;
    cleanSubscriptions(client: { id: string }): Promise<void>;
    outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: object): Promise<void>;
    outgoingUpdate(client: { id: string }, packet: object): Promise<void>;
    outgoingClearMessageId(client: { id: string }, packet: { messageId?: number | undefined }): Promise<unknown>;
    streamWill(brokers?: Record<string, unknown>): AsyncIterable<unknown>;
    createRetainedStreamCombi(patterns: string[]): AsyncIterable<unknown>;
    createRetainedStream(pattern: string): AsyncIterable<unknown>;
    outgoingStream(client: { id: string }): AsyncIterable<unknown>;
    delWill(client: { id: string; brokerId?: string }): Promise<unknown>;
    destroy(): Promise<void>;
  }
}

