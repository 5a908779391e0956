/**
 * Which warehouse ships what: one warehouse holding every line if there is one (one parcel),
 * else line by line (greedy): a warehouse already in the order if it holds the whole line, else
 * the warehouses with the most available, a line split between them where it must be.
 */
export interface StockLevel {
	sku: string;
	warehouseId: string;
	available: number;
}

export interface Allocation {
	warehouseId: string;
	sku: string;
	quantity: number;
}

export type AllocationResult = { ok: true; allocations: Allocation[] } | { ok: false; short: { sku: string; requested: number; available: number }[] };

/** An order's lines with one line per sku, quantities added up, in the order skus first appear. */
export function mergeLines(lines: { sku: string; quantity: number }[]): { sku: string; quantity: number }[] {
	const merged = new Map<string, number>();
	for (const l of lines) merged.set(l.sku, (merged.get(l.sku) ?? 0) + l.quantity);
	return [...merged].map(([sku, quantity]) => ({ sku, quantity }));
}

export function allocate(lines: { sku: string; quantity: number }[], stock: StockLevel[]): AllocationResult {
	const wanted = mergeLines(lines);
	const at = (w: string, sku: string) => stock.find(s => s.warehouseId === w && s.sku === sku)?.available ?? 0;

	const warehouses = [...new Set(stock.map(s => s.warehouseId))].sort();
	const single = warehouses.find(w => wanted.every(l => at(w, l.sku) >= l.quantity));
	if (single) return { ok: true, allocations: wanted.map(l => ({ warehouseId: single, sku: l.sku, quantity: l.quantity })) };

	const allocations: Allocation[] = [];
	const short: { sku: string; requested: number; available: number }[] = [];
	const used = new Set<string>();
	for (const l of wanted) {
		const sources = stock.filter(s => s.sku === l.sku && s.available > 0).sort((a, b) => b.available - a.available || a.warehouseId.localeCompare(b.warehouseId));
		const total = sources.reduce((n, s) => n + s.available, 0);
		if (total < l.quantity) {
			short.push({ sku: l.sku, requested: l.quantity, available: total });
			continue;
		}
		// A warehouse already shipping part of the order that holds the whole line saves a parcel.
		const joined = sources.find(s => used.has(s.warehouseId) && s.available >= l.quantity);
		if (joined) {
			allocations.push({ warehouseId: joined.warehouseId, sku: l.sku, quantity: l.quantity });
			continue;
		}
		let left = l.quantity;
		for (const s of sources) {
			if (!left) break;
			const take = Math.min(left, s.available);
			allocations.push({ warehouseId: s.warehouseId, sku: l.sku, quantity: take });
			used.add(s.warehouseId);
			left -= take;
		}
	}
	return short.length ? { ok: false, short } : { ok: true, allocations };
}

/** A stable order for allocations (by sku, then warehouse): results read the same every time. */
export function bySkuThenWarehouse(a: Allocation, b: Allocation): number {
	return a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : a.warehouseId < b.warehouseId ? -1 : a.warehouseId > b.warehouseId ? 1 : 0;
}
