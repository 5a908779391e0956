/**
 * The REPL's catalogue commands against a stand-in broker: catalog-import runs the importer
 * through the REPL's connection (as the system user) and prints the summary with the refused
 * rows; --dry-run reaches every call; catalog-export writes the CSV; the REPL finds them.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadCustomCommands } from "../../../bin/repl";
import { catalogCommands } from "../../../lib/repl/catalog-commands";

function fakeBroker() {
	const calls: { action: string; params: any; opts: any }[] = [];
	const answers: Record<string, (p: any) => unknown> = {
		"warehouse.listWarehouses": () => ({ items: [{ id: "wh-1" }] }),
		"catalog.importProducts": p => ({ results: p.rows.map((r: any) => (r.product.category === "kitchen" ? { line: r.line, sku: r.product.sku, result: "created" } : { line: r.line, sku: r.product.sku, result: "refused", reason: `unknown category "${r.product.category}"` })) }),
		"warehouse.setStockMany": p => ({ results: p.items.map((i: any) => ({ ...i, result: "set" })) }),
		"catalog.exportProducts": () => ({ items: [{ sku: "KT-1", name: "Kettle", description: "", brand: "Zephyr", categorySlug: "kitchen", price: { amount: 4599, currency: "USD" }, weightGrams: 900, status: "active", attributes: {}, images: [] }], next: null }),
		"warehouse.stockLevels": () => ({ "KT-1": { "wh-1": 4 } }),
	};
	return {
		calls,
		registry: { getServiceList: () => [{ name: "catalog" }, { name: "warehouse" }] },
		async call(action: string, params: any, opts: any) {
			calls.push({ action, params, opts });
			return answers[action](params);
		},
	};
}

async function run(name: string, broker: any, args: any): Promise<string> {
	const cmd = catalogCommands.find(c => c.command.split(" ")[0] === name)!;
	const out: string[] = [];
	const spy = jest.spyOn(console, "log").mockImplementation((...a: unknown[]) => void out.push(a.join(" ")));
	try {
		await cmd.action(broker, args, {});
	} finally {
		spy.mockRestore();
	}
	return out.join("\n");
}

const dir = mkdtempSync(join(tmpdir(), "mc-repl-catalog-"));

describe("catalogue REPL commands", () => {
	it("are found by the REPL among lib/repl's command modules", () => {
		const { commands, problems } = loadCustomCommands(join(__dirname, "../../../lib/repl"));
		expect(problems).toEqual([]);
		expect(commands.map(c => c.command)).toEqual(expect.arrayContaining(["catalog-import <file>", "catalog-export <file>"]));
	});

	it("catalog-import imports as the system user and lists refused rows with their line", async () => {
		const file = join(dir, "p.csv");
		writeFileSync(file, "sku,name,brand,category,price,stock:wh-1\nKT-1,Kettle,Zephyr,kitchen,45.99,4\nKT-2,Lost,Zephyr,attic,1.00,1\n");
		const broker = fakeBroker();
		const out = await run("catalog-import", broker, { file, options: { dryRun: true } });
		expect(out).toContain("p.csv: 2 rows in");
		expect(out).toContain("[dry run: nothing written]");
		expect(out).toContain("products: would be 1 created, 0 updated, 0 unchanged; 1 rows refused");
		expect(out).toContain('  line 3 (SKU KT-2): unknown category "attic"');
		const writes = broker.calls.filter(c => c.action !== "warehouse.listWarehouses");
		expect(writes.map(c => [c.action, c.params.dryRun, c.opts.meta.user.typ])).toEqual([
			["catalog.importProducts", true, "system"],
			["warehouse.setStockMany", true, "system"],
		]);
	});

	it("catalog-import says why a file cannot be imported, without calling the catalog", async () => {
		const file = join(dir, "bad.csv");
		writeFileSync(file, "sku,title\nKT-1,Kettle\n");
		const broker = fakeBroker();
		expect(await run("catalog-import", broker, { file, options: {} })).toMatch(/unknown column "title"/);
		expect(broker.calls).toEqual([]);
	});

	it("catalog-export writes the catalogue with stock per warehouse", async () => {
		const file = join(dir, "out.csv");
		expect(await run("catalog-export", fakeBroker(), { file, options: {} })).toBe(`${file}: 1 products, stock in wh-1`);
		expect(readFileSync(file, "utf8")).toBe("sku,name,description,brand,category,price,currency,weightGrams,status,attributes,images,stock:wh-1\nKT-1,Kettle,,Zephyr,kitchen,45.99,USD,900,active,,,4\n");
	});
});
