import { type Allocation, type StockLevel, allocate, bySkuThenWarehouse } from "../../../lib/inventory/allocation";

describe("stock allocation", () => {
	const stock: StockLevel[] = [
		{ sku: "A", warehouseId: "east", available: 5 },
		{ sku: "A", warehouseId: "west", available: 10 },
		{ sku: "B", warehouseId: "east", available: 3 },
		{ sku: "B", warehouseId: "west", available: 1 },
		{ sku: "C", warehouseId: "east", available: 8 },
	];

	it("ships everything from one warehouse when one holds every line, the first by id", () => {
		expect(allocate([{ sku: "A", quantity: 5 }, { sku: "B", quantity: 1 }], stock)).toEqual({
			ok: true,
			allocations: [{ warehouseId: "east", sku: "A", quantity: 5 }, { warehouseId: "east", sku: "B", quantity: 1 }],
		});
		expect(allocate([{ sku: "A", quantity: 6 }, { sku: "B", quantity: 1 }], stock)).toEqual({
			ok: true,
			allocations: [{ warehouseId: "west", sku: "A", quantity: 6 }, { warehouseId: "west", sku: "B", quantity: 1 }],
		});
	});

	it("splits lines across warehouses when no single one holds them all, keeping a line whole where it fits", () => {
		expect(allocate([{ sku: "A", quantity: 7 }, { sku: "C", quantity: 2 }], stock)).toEqual({
			ok: true,
			allocations: [{ warehouseId: "west", sku: "A", quantity: 7 }, { warehouseId: "east", sku: "C", quantity: 2 }],
		});
	});

	it("splits one line between warehouses, the fullest first", () => {
		expect(allocate([{ sku: "A", quantity: 14 }], stock)).toEqual({
			ok: true,
			allocations: [{ warehouseId: "west", sku: "A", quantity: 10 }, { warehouseId: "east", sku: "A", quantity: 4 }],
		});
	});

	it("takes a line from a warehouse already in the order when that one holds all of it", () => {
		const levels: StockLevel[] = [
			{ sku: "C", warehouseId: "east", available: 8 },
			{ sku: "A", warehouseId: "east", available: 5 },
			{ sku: "A", warehouseId: "west", available: 10 },
			{ sku: "E", warehouseId: "east", available: 2 },
			{ sku: "E", warehouseId: "north", available: 9 },
		];
		// No warehouse holds all three; east ships C anyway, so E comes from east too, not from the fuller north.
		expect(allocate([{ sku: "C", quantity: 8 }, { sku: "A", quantity: 6 }, { sku: "E", quantity: 2 }], levels)).toEqual({
			ok: true,
			allocations: [
				{ warehouseId: "east", sku: "C", quantity: 8 },
				{ warehouseId: "west", sku: "A", quantity: 6 },
				{ warehouseId: "east", sku: "E", quantity: 2 },
			],
		});
	});

	it("names every short line, unknown skus included, and allocates nothing", () => {
		expect(allocate([{ sku: "A", quantity: 16 }, { sku: "B", quantity: 4 }, { sku: "Z", quantity: 1 }], stock)).toEqual({
			ok: false,
			short: [{ sku: "A", requested: 16, available: 15 }, { sku: "Z", requested: 1, available: 0 }],
		});
		expect(allocate([{ sku: "B", quantity: 3 }, { sku: "B", quantity: 2 }], stock)).toEqual({ ok: false, short: [{ sku: "B", requested: 5, available: 4 }] });
	});

	it("merges repeated lines of one sku", () => {
		expect(allocate([{ sku: "B", quantity: 2 }, { sku: "B", quantity: 2 }], stock)).toEqual({
			ok: true,
			allocations: [{ warehouseId: "east", sku: "B", quantity: 3 }, { warehouseId: "west", sku: "B", quantity: 1 }],
		});
	});

	it("never takes more than a warehouse has and always takes exactly what was asked, for any stock", () => {
		let seed = 42;
		const rnd = (n: number) => {
			seed = (seed * 1103515245 + 12345) % 2 ** 31;
			return seed % n;
		};
		for (let run = 0; run < 500; run++) {
			const levels: StockLevel[] = [];
			for (const sku of ["A", "B", "C", "D"]) for (const w of ["w1", "w2", "w3"]) if (rnd(3)) levels.push({ sku, warehouseId: w, available: rnd(6) });
			const lines = Array.from({ length: 1 + rnd(4) }, () => ({ sku: "ABCDE"[rnd(5)], quantity: 1 + rnd(8) }));
			const wanted = new Map<string, number>();
			for (const l of lines) wanted.set(l.sku, (wanted.get(l.sku) ?? 0) + l.quantity);
			const total = (sku: string) => levels.filter(s => s.sku === sku).reduce((n, s) => n + s.available, 0);
			const result = allocate(lines, levels);
			const shortSkus = [...wanted].filter(([sku, q]) => total(sku) < q).map(([sku]) => sku);
			if (!result.ok) {
				expect(result.short.map(s => s.sku)).toEqual(shortSkus);
				continue;
			}
			expect(shortSkus).toEqual([]);
			for (const [sku, q] of wanted) expect(result.allocations.filter(a => a.sku === sku).reduce((n, a) => n + a.quantity, 0)).toBe(q);
			for (const a of result.allocations) {
				expect(a.quantity).toBeGreaterThan(0);
				const taken = result.allocations.filter(b => b.sku === a.sku && b.warehouseId === a.warehouseId).reduce((n, b) => n + b.quantity, 0);
				expect(taken).toBeLessThanOrEqual(levels.find(s => s.sku === a.sku && s.warehouseId === a.warehouseId)?.available ?? 0);
			}
		}
	});

	it("orders allocations by sku, then warehouse", () => {
		const list: Allocation[] = [
			{ warehouseId: "west", sku: "B", quantity: 1 },
			{ warehouseId: "west", sku: "A", quantity: 1 },
			{ warehouseId: "east", sku: "B", quantity: 1 },
		];
		expect([...list].sort(bySkuThenWarehouse).map(a => `${a.sku}@${a.warehouseId}`)).toEqual(["A@west", "B@east", "B@west"]);
	});
});
