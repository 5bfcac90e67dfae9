// Types for aedes-persistence's in-memory store, Aedes's default, as Aedes 1.x calls it (the
// package's own types describe its older callback interface, and its default export does not load
// as typed under ESM). aedes-adapter.test.ts hands it to Aedes itself, to slow one step down or
// to watch one.
declare module 'aedes-persistence/asyncPersistence.js' {
  export default class MemoryPersistence {
    setup(broker: object): Promise<void>;
    delWill(client: { id: string }): Promise<unknown>;
    outgoingClearMessageId(client: { id: string }, packet: { messageId?: number }): Promise<unknown>;
  }
}
