// The lease-demand policy of a worker process (the heart of the Rate Limiting pattern): from what
// waits for each workflow and what the process really spends, how many request units per second
// of the ERP's shared capacity it asks its lease keeper for, and how its pacer splits what it gets
// between the workflows. Pure: the worker reads the backlog, the pacer and the keeper, calls
// leaseDemand once per keeper tick, and applies the answer (weights to the pacer, RU/s to the keeper).

/**
 * The backlog a process asks capacity for is to be drained within this many seconds: demand for
 * the backlog is its cost divided by the horizon. One second matches the window spending is
 * smoothed over and is several lease ticks (250 ms): a backlog that outlives it is asked for again.
 */
export const BACKLOG_HORIZON_S = 1;

/**
 * Capacity asked for beyond what the process is observed to spend. Spending can never exceed the
 * capacity the pacer releases, so a demand of exactly the spending would hold the capacity where it
 * is (and let every small dip shrink it for good); 20 % above it leaves the room to grow back,
 * while a process that slows down still gives most of its capacity back within a few ticks.
 */
export const SPENDING_HEADROOM = 1.2;

/**
 * While operations wait for pacing credit the capacity is too small: the process asks for half as
 * much again as it has, so its capacity grows geometrically (×1.5 a tick) to what its work needs
 * instead of one partition a tick, yet not so fast that one busy process takes every partition on
 * one tick of a burst. A process holding nothing (its leases lost or never held) asks for at least
 * one partition's capacity, or 1.5 × 0 would never bring it back.
 */
export const STARVING_GROWTH = 1.5;

/**
 * Observed spending is smoothed with this time constant (seconds): an exponential moving average
 * in which a reading taken dt seconds after the last one counts for dt / SPENDING_WINDOW_S (at most
 * all of it), so the figure follows what the process uses over about a second, not one batch.
 */
export const SPENDING_WINDOW_S = 1;

/** What the process has spent so far and how fast it has been spending (smoothed), at a moment. */
export interface Spending {
  /** Request units released to operations so far (the pacer's running total). */
  spent: number;
  /** When `spent` was read, in milliseconds. */
  at: number;
  /** Request units per second, smoothed over SPENDING_WINDOW_S. */
  rate: number;
}

/** No spending yet, as of `at`. */
export const initialSpending = (at: number): Spending => ({ spent: 0, at, rate: 0 });

/** The smoothed spending after reading the running total `spent` at `at` (ms); pure. */
export function observeSpending(previous: Spending, spent: number, at: number): Spending {
  // At least a millisecond apart: two readings in the same millisecond are not an infinite rate.
  const dt = Math.max(1, at - previous.at) / 1000;
  const instant = (spent - previous.spent) / dt;
  const rate = previous.rate + (instant - previous.rate) * Math.min(1, dt / SPENDING_WINDOW_S);
  return { spent, at, rate };
}

export interface WorkflowBacklog {
  /** The workflow's name in the pacer (the ERP operation kind). */
  kind: string;
  /** Messages waiting for it. */
  messages: number;
  /** Request units one of its operations costs. */
  cost: number;
}

export interface DemandInputs {
  workflows: readonly WorkflowBacklog[];
  /**
   * True when the backlogs are the broker's counts for each whole shared group, which every member
   * drains together; false when they are what this process holds itself.
   */
  groupBacklog: boolean;
  /** Worker processes wanting capacity at the last lease tick, this one included (at least 1). */
  members: number;
  /** Smoothed spending, request units per second (observeSpending). */
  spendingRate: number;
  /** Operations waiting for pacing credit now, all workflows together. */
  waiting: number;
  /** The capacity the pacer paces at (leases plus reserved, before any 429 cut). */
  capacity: number;
  /** The capacity of one lease partition (the shared capacity over the partitions). */
  partitionCapacity: number;
}

export interface Demand {
  /** Request units per second to ask the lease keeper for (before its fair-share cap). */
  ru: number;
  /** The pacer's split between workflows: relative shares, by workflow kind. */
  weights: Record<string, number>;
}

/** How much capacity to ask for and how to split it between workflows; pure. */
export function leaseDemand({ workflows, groupBacklog, members, spendingRate, waiting, capacity, partitionCapacity }: DemandInputs): Demand {
  const weights: Record<string, number> = {};
  let backlogRu = 0;
  for (const wf of workflows) {
    const ru = wf.messages * wf.cost;
    // The split follows the backlogs (the same on every process, when they are the group's); one
    // operation's worth more, so a workflow with nothing waiting keeps a share for what arrives.
    weights[wf.kind] = ru + wf.cost;
    backlogRu += ru;
  }
  // A group's backlog is shared by every member: this process drains its part.
  const share = groupBacklog ? backlogRu / Math.max(1, members) : backlogRu;
  const starving = waiting > 0 ? Math.max(capacity * STARVING_GROWTH, partitionCapacity) : 0;
  return { ru: Math.max(share / BACKLOG_HORIZON_S + spendingRate * SPENDING_HEADROOM, starving), weights };
}
