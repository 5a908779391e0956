/**
 * How an order's stock allocations become fulfillments: one per warehouse, each listing the
 * skus (and quantities) that warehouse sends.
 */
export interface Allocation {
	warehouseId: string;
	sku: string;
	quantity: number;
}

export interface FulfillmentPlan {
	warehouseId: string;
	items: { sku: string; quantity: number }[];
}

/** Groups allocations by warehouse (in order of first appearance); a sku twice in one warehouse is one line. */
export function planFulfillments(allocations: readonly Allocation[]): FulfillmentPlan[] {
	const byWarehouse = new Map<string, Map<string, number>>();
	for (const a of allocations) {
		const items = byWarehouse.get(a.warehouseId) ?? new Map<string, number>();
		items.set(a.sku, (items.get(a.sku) ?? 0) + a.quantity);
		byWarehouse.set(a.warehouseId, items);
	}
	return [...byWarehouse].map(([warehouseId, items]) => ({ warehouseId, items: [...items].map(([sku, quantity]) => ({ sku, quantity })) }));
}
