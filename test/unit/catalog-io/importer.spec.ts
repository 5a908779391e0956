/**
 * The importer against a stand-in for the catalog and warehouse (a client that answers as they
 * do): line numbers of refused rows (multi-line cells, blank lines, a broken quote), duplicates
 * in the file, batches by count and by size, stock only for accepted products, the dry run
 * passed through, and a header that stops everything before any call.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CatalogueClient } from "../../../lib/catalog-io/client";
import { ImportAborted, importCatalogue } from "../../../lib/catalog-io/importer";
import { importSummary } from "../../../lib/catalog-io/report";

function file(text: string): string {
	const path = join(mkdtempSync(join(tmpdir(), "mc-import-")), "products.csv");
	writeFileSync(path, text);
	return path;
}

/** Accepts every row whose category is known, "updates" SKUs it has seen, refuses stock below 0 reserved… as the services would. */
function standIn(opts: { warehouses?: string[]; categories?: string[] } = {}) {
	const calls: { action: string; params: any }[] = [];
	const seen = new Set<string>();
	const client: CatalogueClient = {
		async has() {
			return true;
		},
		async call(action: string, params: any): Promise<any> {
			calls.push({ action, params });
			if (action === "warehouse.listWarehouses") return { items: (opts.warehouses ?? ["wh-1"]).map(id => ({ id })) };
			if (action === "catalog.importProducts") {
				return {
					results: params.rows.map((r: any) => {
						if (!(opts.categories ?? ["kitchen"]).includes(r.product.category)) return { line: r.line, sku: r.product.sku, result: "refused", reason: `unknown category "${r.product.category}"` };
						const result = seen.has(r.product.sku) ? "unchanged" : "created";
						if (!params.dryRun) seen.add(r.product.sku);
						return { line: r.line, sku: r.product.sku, result };
					}),
				};
			}
			if (action === "warehouse.setStockMany") {
				return { results: params.items.map((i: any) => (i.onHand > 100 ? { ...i, result: "refused", reason: `on hand ${i.onHand} at ${i.warehouseId} would be below the 101 reserved` } : { ...i, result: "set" })) };
			}
			throw new Error(`unexpected call ${action}`);
		},
	};
	return { client, calls };
}

const HEAD = "sku,name,brand,category,price,description,stock:wh-1\n";

describe("importing a catalogue file", () => {
	it("reports every refused row with the line it starts on, and imports the others with their stock", async () => {
		const text =
			HEAD +
			'KT-1,Kettle,Zephyr,kitchen,45.99,"two\nlines",5\n' + // lines 2-3
			"\n" + // line 4, blank
			"KT-2,Toaster,Zephyr,nope,19.99,,1\n" + // 5: unknown category (the catalog's answer)
			"KT-3,Mug,Zephyr,kitchen,12.345,,1\n" + // 6: bad price (the file's)
			"kt-1,Again,Zephyr,kitchen,1.00,,1\n" + // 7: duplicate SKU, any case
			"KT-4,Pan,Zephyr,kitchen,30,,500\n" + // 8: product in, stock refused
			"KT-5,Nul\u0000,Zephyr,kitchen,1,,\n" + // 9: a control character, refused by itself before any call
			'KT-6,Lid,Zephyr,kitchen,2,"never closed,1\nKT-7,Cup,Zephyr,kitchen,3,,1\n'; // 10-11: a quote never closed
		const { client, calls } = standIn();
		const r = await importCatalogue(client, file(text));
		expect(r.refused).toEqual([
			{ line: 5, sku: "KT-2", reason: 'unknown category "nope"' },
			{ line: 6, sku: "KT-3", reason: 'price "12.345" is not an amount like 19.99' },
			{ line: 7, sku: "kt-1", reason: "duplicate SKU in the file: first on line 2" },
			{ line: 8, sku: "KT-4", reason: "stock:wh-1: on hand 500 at wh-1 would be below the 101 reserved" },
			{ line: 9, sku: "KT-5", reason: "name must not contain control characters (found U+0000)" },
			{ line: 10, reason: expect.stringMatching(/^the CSV cannot be read here: Quote Not Closed/) },
		]);
		expect({ rows: r.rows, created: r.created, updated: r.updated, unchanged: r.unchanged, stock: r.stock }).toEqual({ rows: 7, created: 2, updated: 0, unchanged: 0, stock: { set: 1, unchanged: 0 } });
		expect(calls.map(c => c.action)).toEqual(["warehouse.listWarehouses", "catalog.importProducts", "warehouse.setStockMany"]);
		const sent = calls[1].params.rows;
		expect(sent.map((x: any) => x.line)).toEqual([2, 5, 8]);
		expect(sent[0]).toEqual({ line: 2, product: { sku: "KT-1", name: "Kettle", brand: "Zephyr", category: "kitchen", price: { amount: 4599, currency: "USD" }, description: "two\nlines" } });
		// Stock goes only with products the catalog took.
		expect(calls[2].params.items.map((i: any) => [i.line, i.sku, i.onHand])).toEqual([
			[2, "KT-1", 5],
			[8, "KT-4", 500],
		]);
		expect(importSummary(r)).toContain("  line 7 (SKU kt-1): duplicate SKU in the file: first on line 2");
	});

	it("sends batches of the given size, the last one short, and reports progress after each", async () => {
		const rows = Array.from({ length: 25 }, (_, i) => `SKU-${i},Item ${i},Acme,kitchen,1.00,,${i}`).join("\n");
		const { client, calls } = standIn();
		const progress: number[] = [];
		const r = await importCatalogue(client, file(HEAD + rows), { batchSize: 10, onProgress: p => progress.push(p.rows) });
		expect(calls.filter(c => c.action === "catalog.importProducts").map(c => c.params.rows.length)).toEqual([10, 10, 5]);
		expect(progress).toEqual([10, 20, 25]);
		expect(r.created).toBe(25);
		const again = await importCatalogue(client, file(HEAD + rows), { batchSize: 10 });
		expect([again.created, again.unchanged, again.refused]).toEqual([0, 25, []]);
	});

	it("closes a batch early when its rows grow large, to stay far below the bus's message limit", async () => {
		const long = "d".repeat(4000);
		const rows = Array.from({ length: 250 }, (_, i) => `SKU-${i},Item,Acme,kitchen,1.00,${long},`).join("\n");
		const { client, calls } = standIn();
		await importCatalogue(client, file(HEAD + rows));
		const sizes = calls.filter(c => c.action === "catalog.importProducts").map(c => JSON.stringify(c.params).length);
		expect(sizes.length).toBeGreaterThan(1);
		for (const s of sizes) expect(s).toBeLessThan(500_000);
	});

	it("passes the dry run to every call", async () => {
		const { client, calls } = standIn();
		const r = await importCatalogue(client, file(`${HEAD}KT-1,Kettle,Zephyr,kitchen,45.99,,5\n`), { dryRun: true });
		expect(r.dryRun).toBe(true);
		expect(calls.filter(c => c.action !== "warehouse.listWarehouses").map(c => [c.action, c.params.dryRun])).toEqual([
			["catalog.importProducts", true],
			["warehouse.setStockMany", true],
		]);
	});

	it("stops before any row is sent when the header cannot be read or names a warehouse that does not exist", async () => {
		const bad = standIn();
		await expect(importCatalogue(bad.client, file("sku,name,prise\nA,B,1\n"))).rejects.toBeInstanceOf(ImportAborted);
		await expect(importCatalogue(bad.client, file(""))).rejects.toThrow(/empty/);
		const unknown = standIn({ warehouses: ["wh-east"] });
		await expect(importCatalogue(unknown.client, file(`${HEAD}KT-1,K,Z,kitchen,1,,1\n`))).rejects.toMatchObject({ problems: ['column "stock:wh-1": no warehouse "wh-1" (warehouses: wh-east)'] });
		expect([...bad.calls, ...unknown.calls].map(c => c.action)).toEqual(["warehouse.listWarehouses"]);
	});
});
