// Tells whoever follows an order (its event streams) that the order's history grew. In process only:
// the orders service applies every change itself (OrderStore), so it needs no broker to learn of them.
export class OrderChanges {
  readonly #watchers = new Map<string, Set<() => void>>();

  /** Calls `wake` after each committed change of the order, until the returned function is called. */
  watch(orderId: string, wake: () => void): () => void {
    let set = this.#watchers.get(orderId);
    if (!set) this.#watchers.set(orderId, (set = new Set()));
    set.add(wake);
    return () => {
      set.delete(wake);
      if (set.size === 0 && this.#watchers.get(orderId) === set) this.#watchers.delete(orderId);
    };
  }

  /** Called by the store once a change is committed. */
  notify(orderId: string): void {
    for (const wake of [...(this.#watchers.get(orderId) ?? [])]) wake();
  }

  /** Orders followed right now (for tests and metrics). */
  get watched(): number {
    return this.#watchers.size;
  }
}
