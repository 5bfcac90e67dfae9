// Types for qlobber's QlobberSub (qlobber 8), the topic trie Aedes's own stores match persistent
// subscriptions with; the package ships none. Only what broker/persistence.ts calls.
declare module 'qlobber/aedes/qlobber-sub.js' {
  export interface QlobberSubValue {
    clientId: string;
    topic: string;
    qos: number;
    rh?: number | undefined;
    rap?: boolean | undefined;
    nl?: boolean | undefined;
  }
  export default class QlobberSub {
    constructor(options: { separator: string; wildcard_one: string; wildcard_some: string; match_empty_levels?: boolean });
    /** Adds (or, for the same client and filter, replaces) a subscription. */
    add(filter: string, value: QlobberSubValue): this;
    remove(filter: string, value: Pick<QlobberSubValue, 'clientId' | 'topic'>): this;
    /** The subscriptions whose filter matches `topic`, each with its filter as `topic`. */
    match(topic: string): QlobberSubValue[];
  }
}
