/**
 * Catalogue import and export against the real catalog, warehouse, search and shipping services
 * (one broker), on SQLite and on PostgreSQL: good rows in and refused rows reported by line;
 * idempotent by SKU (a second run changes nothing and records no event, a changed row updates
 * one product); a dry run writes nothing yet answers as the real run will; two imports of one
 * file at once make each product once; an exported file imports back unchanged.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServiceBroker } from "moleculer";
import { defineOutboxModel } from "../../../lib/bus/outbox-relay";
import { brokerClient } from "../../../lib/catalog-io/client";
import { exportCatalogue } from "../../../lib/catalog-io/exporter";
import { importCatalogue } from "../../../lib/catalog-io/importer";
import { useTestEnv } from "../../support/env";
import { PG_URL, dropDatabases, pgPrefix, waitFor } from "../events/helpers";

jest.setTimeout(180_000);

const dir = mkdtempSync(join(tmpdir(), "mc-import-it-"));
const csv = (name: string, text: string) => {
	const path = join(dir, name);
	writeFileSync(path, text);
	return path;
};
const HEAD = "sku,name,description,brand,category,price,weightGrams,status,attributes,images,stock:wh-a,stock:wh-b";
const rowsFor = (from: number, to: number, price = "19.99") =>
	Array.from({ length: to - from }, (_, k) => {
		const i = from + k;
		return `IMP-${i},Imported Kettle ${i},"A kettle, number ${i}",Zephyr,${i % 2 ? "kettles" : "kitchen"},${price},${800 + i},active,"{""color"":""red""}",https://img.example.com/${i}.jpg,${i % 7},${i % 3}`;
	});

describe.each([
	["SQLite", {}],
	["PostgreSQL", { DATABASE_URL: PG_URL, DB_NAME_PREFIX: pgPrefix("imp") }],
])("catalogue import and export on %s", (_db, env: Record<string, string>) => {
	let broker: ServiceBroker;
	const system = { meta: { user: { id: "system", typ: "system", roles: [] } } };
	const client = () => brokerClient(broker);
	const catalog = () => broker.getLocalService("catalog") as any;
	const outboxCount = async (service: string) => defineOutboxModel((broker.getLocalService(service) as any).sequelize).count();
	const products = () => catalog().models.Product.count() as Promise<number>;

	beforeAll(async () => {
		useTestEnv({ ...env, SEED_DEMO: "false" });
		const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
		broker = createBroker(["catalog", "warehouse", "search", "shipping"], { logger: false, namespace: `imp-${Math.random().toString(36).slice(2)}` });
		await broker.start();
		const kitchen: any = await broker.call("catalog.createCategory", { slug: "kitchen", name: "Kitchen" }, system);
		await broker.call("catalog.createCategory", { slug: "kettles", name: "Kettles", parentId: kitchen.id }, system);
		for (const id of ["wh-a", "wh-b"]) await broker.call("warehouse.createWarehouse", { id, name: id, address: { line1: "1 Road", city: "Newark", postalCode: "07114", country: "US" } }, system);
	});

	afterAll(async () => {
		await broker?.stop();
		if (env.DATABASE_URL) await dropDatabases(env.DB_NAME_PREFIX);
	});

	it("imports the good rows with their stock and reports each refused one by line and reason", async () => {
		const bad = [
			"IMP-X1,Unknown Category,,Zephyr,no-such-category,1.00,,,,,1,",
			"IMP-X2,Bad Price,,Zephyr,kitchen,1.999,,,,,1,",
			"imp-0,Duplicate,,Zephyr,kitchen,1.00,,,,,1,",
			"IMP-X3,Nul\u0000Kettle,,Zephyr,kitchen,1.00,,,,,1,",
			"IMP-X4,Odd Status,,Zephyr,kitchen,1.00,,draft-ish,,https://img.example.com/x.jpg,1,",
			"IMP-X5,Heavy Kettle,,Zephyr,kitchen,1.00,100001,,,,1,",
			"IMP X6,Space In Sku,,Zephyr,kitchen,1.00,,,,,1,",
		];
		const text = [HEAD, ...rowsFor(0, 40), ...bad].join("\n") + "\n";
		const report = await importCatalogue(client(), csv("first.csv", text), { batchSize: 15 });
		expect(report).toMatchObject({ rows: 47, created: 40, updated: 0, unchanged: 0, stock: { set: 80, unchanged: 0 } });
		expect(report.refused.map(r => [r.line, r.sku])).toEqual([
			[42, "IMP-X1"],
			[43, "IMP-X2"],
			[44, "imp-0"],
			[45, "IMP-X3"],
			[46, "IMP-X4"],
			[47, "IMP-X5"],
			[48, "IMP X6"],
		]);
		expect(report.refused.map(r => r.reason)).toEqual([
			'unknown category "no-such-category"',
			'price "1.999" is not an amount like 19.99',
			"duplicate SKU in the file: first on line 2",
			"name must not contain control characters (found U+0000)",
			expect.stringMatching(/status/),
			expect.stringMatching(/weightGrams/),
			expect.stringMatching(/sku/),
		]);
		expect(await products()).toBe(40);
		const p = ((await broker.call("catalog.exportProducts", { limit: 1 }, system)) as any).items[0];
		expect(p).toMatchObject({ sku: "IMP-0", name: "Imported Kettle 0", description: "A kettle, number 0", categorySlug: "kitchen", price: { amount: 1999, currency: "USD" }, weightGrams: 800, attributes: { color: "red" }, images: ["https://img.example.com/0.jpg"] });
		expect((await broker.call("warehouse.stock", { sku: "IMP-5" }, system)) as any).toEqual({
			sku: "IMP-5",
			warehouses: [
				{ warehouseId: "wh-a", onHand: 5, reserved: 0, available: 5 },
				{ warehouseId: "wh-b", onHand: 2, reserved: 0, available: 2 },
			],
		});
		// Search follows through the events: kettles are in "kitchen", with their stock.
		await waitFor(async () => ((await broker.call("search.search", { category: "kitchen", pageSize: 100 })) as any).total === 40, 60_000);
		expect(((await broker.call("search.search", { q: "kettle", category: "kettles", inStock: true })) as any).total).toBeGreaterThan(0);
	});

	it("changes nothing and records no event when the same file comes again, and updates just the rows that changed", async () => {
		const text = [HEAD, ...rowsFor(0, 40)].join("\n");
		const before = { catalog: await outboxCount("catalog"), warehouse: await outboxCount("warehouse") };
		const again = await importCatalogue(client(), csv("again.csv", text));
		expect(again).toMatchObject({ rows: 40, created: 0, updated: 0, unchanged: 40, refused: [], stock: { set: 0, unchanged: 80 } });
		expect({ catalog: await outboxCount("catalog"), warehouse: await outboxCount("warehouse") }).toEqual(before);

		const changed = text.replace("IMP-3,Imported Kettle 3,", "IMP-3,Imported Kettle Three,").replace(/^(IMP-4,.*),4,1$/m, "$1,40,1");
		const update = await importCatalogue(client(), csv("changed.csv", changed));
		expect(update).toMatchObject({ created: 0, updated: 1, unchanged: 39, stock: { set: 1, unchanged: 79 } });
		expect({ catalog: await outboxCount("catalog"), warehouse: await outboxCount("warehouse") }).toEqual({ catalog: before.catalog + 1, warehouse: before.warehouse + 1 });
		expect(((await broker.call("catalog.exportProducts", { after: "IMP-29", limit: 1 }, system)) as any).items[0].name).toBe("Imported Kettle Three");
	});

	it("answers a dry run exactly as the real run then does, writing nothing", async () => {
		const text = [HEAD, ...rowsFor(40, 50), "IMP-1,Renamed In Dry Run,,Zephyr,kitchen,1.00,,,,,1,1", "IMP-Y,Bad,,Zephyr,nowhere,1.00,,,,,,"].join("\n");
		const before = { products: await products(), catalog: await outboxCount("catalog"), warehouse: await outboxCount("warehouse") };
		const dry = await importCatalogue(client(), csv("dry.csv", text), { dryRun: true });
		expect({ products: await products(), catalog: await outboxCount("catalog"), warehouse: await outboxCount("warehouse") }).toEqual(before);
		const real = await importCatalogue(client(), csv("dry.csv", text));
		const outcome = (r: typeof dry) => ({ rows: r.rows, created: r.created, updated: r.updated, unchanged: r.unchanged, refused: r.refused, stock: r.stock });
		expect(outcome(dry)).toEqual(outcome(real));
		expect(outcome(real)).toMatchObject({ rows: 12, created: 10, updated: 1, unchanged: 0, refused: [{ line: 13, sku: "IMP-Y", reason: 'unknown category "nowhere"' }] });
		expect(await products()).toBe(before.products + 10);
	});

	it("makes each product once when two imports of one file run at the same time", async () => {
		const text = [HEAD, ...rowsFor(100, 160)].join("\n");
		const [a, b] = await Promise.all([importCatalogue(client(), csv("race-a.csv", text), { batchSize: 20 }), importCatalogue(client(), csv("race-b.csv", text), { batchSize: 20 })]);
		expect(a.refused).toEqual([]);
		expect(b.refused).toEqual([]);
		expect(a.created + b.created).toBe(60);
		expect(a.created + a.unchanged + a.updated).toBe(60);
		const skus: string[] = (await catalog().models.Product.findAll({ attributes: ["sku"], raw: true })).map((r: any) => r.sku);
		expect(skus.filter(s => s.startsWith("IMP-1") && s.length === 7)).toHaveLength(60);
		expect(new Set(skus.map(s => s.toLowerCase())).size).toBe(skus.length);
	});

	it("refuses a row for an archived product rather than bringing it back", async () => {
		const archived = ((await broker.call("catalog.exportProducts", { after: "IMP-10", limit: 1 }, system)) as any).items[0];
		await broker.call("catalog.archive", { id: archived.id }, system);
		const r = await importCatalogue(client(), csv("archived.csv", [HEAD, rowsFor(100, 160).find(l => l.startsWith(`${archived.sku},`))].join("\n")));
		expect(r.refused).toEqual([{ line: 2, sku: archived.sku, reason: `SKU ${archived.sku} belongs to an archived product` }]);
	});

	it("exports the catalogue in the format it imports: the file imports back with every row unchanged", async () => {
		const out = join(dir, `export-${Date.now()}.csv`);
		const { createWriteStream } = require("node:fs") as typeof import("node:fs");
		const exported = await exportCatalogue(client(), createWriteStream(out));
		expect(exported).toMatchObject({ products: (await products()) - 1, warehouses: ["wh-a", "wh-b"] });
		const text = readFileSync(out, "utf8");
		expect(text.split("\n")[0]).toBe("sku,name,description,brand,category,price,currency,weightGrams,status,attributes,images,stock:wh-a,stock:wh-b");
		// Its row in the dry-run file had empty attributes and images cells: those were cleared.
		expect(text).toContain("\nIMP-1,Renamed In Dry Run,,Zephyr,kitchen,1.00,USD,801,active,,,1,1\n");
		expect(text).toContain('\nIMP-2,Imported Kettle 2,"A kettle, number 2",Zephyr,kitchen,19.99,USD,802,active,"{""color"":""red""}",https://img.example.com/2.jpg,2,2\n');
		const back = await importCatalogue(client(), out, { dryRun: true });
		expect(back).toMatchObject({ created: 0, updated: 0, unchanged: exported.products, refused: [], stock: { set: 0 } });
	});
});
