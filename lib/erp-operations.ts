// The operations the ERP records and what each costs in request units: one definition for the ERP
// sandbox, which charges them (ERP_*_COST_RU), and the workers, which pace by them
// (WORKER_*_COST_RU). Both variables default to these costs, so the two sides agree unless told otherwise.
export const ERP_OPERATION_COST_RU = {
  order: 10,
  'stock-movement': 10,
} as const satisfies Record<string, number>;

export type ErpOperationKind = keyof typeof ERP_OPERATION_COST_RU;

export const ERP_OPERATION_KINDS = Object.keys(ERP_OPERATION_COST_RU) as [ErpOperationKind, ...ErpOperationKind[]];
