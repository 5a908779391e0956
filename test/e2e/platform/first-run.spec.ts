/**
 * A shop set up from nothing on the cluster (five node processes over NATS and PostgreSQL,
 * SEED_DEMO off, as in production): the admin creates a category tree and a warehouse,
 * imports a CSV of 1,000 products with stock — with rows that must be refused: an unknown
 * category, a bad price, a SKU twice in the file, a NUL character — through `npm run import`
 * joining the cluster; a second import changes nothing; then a customer finds a product by
 * search and buys it.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestCluster } from "../support/harness";

jest.setTimeout(300_000);

const cluster = new TestCluster(
	[
		{ name: "gateway", services: ["api"] },
		{ name: "identity", services: ["auth", "customers", "users"] },
		{ name: "catalog", services: ["catalog", "search", "reviews"] },
		{ name: "commerce", services: ["cart", "orders", "payments"] },
		{ name: "inventory", services: ["warehouse", "fulfillment", "shipping"] },
	],
	{ SEED_DEMO: "false", AUTH_RATE_LIMIT_MAX: "10000", RATE_LIMIT_MAX: "1000000" },
);

const dir = mkdtempSync(join(tmpdir(), "mc-first-run-"));
const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
const GOOD = 1000;
const SLUGS = ["cookware", "knives", "garden"];

/** 1,000 good rows, and four bad ones among them. */
function catalogueFile(): { path: string; bad: { line: number; sku?: string; reason: string }[] } {
	const lines = ["sku,name,description,brand,category,price,weightGrams,attributes,images,stock:wh-main"];
	const bad: { line: number; sku?: string; reason: string }[] = [];
	for (let i = 1; i <= GOOD; i++) {
		const sku = `FR-${String(i).padStart(4, "0")}`;
		const name = i === 777 ? "Quokka Cast Iron Skillet" : `Everyday Pan ${i}`;
		lines.push(`${sku},${name},"Pan number ${i}, oven-safe",Hearth,${SLUGS[i % 3]},${10 + (i % 90)}.99,${500 + i},"{""sizeCm"":${20 + (i % 10)}}",https://img.example.com/${sku}.jpg,${5 + (i % 20)}`);
		if (i === 100) {
			lines.push("FR-BAD-CAT,Lost Pan,,Hearth,no-such-category,12.00,500,,,1");
			bad.push({ line: lines.length, sku: "FR-BAD-CAT", reason: 'unknown category "no-such-category"' });
		}
		if (i === 200) {
			lines.push("FR-BAD-PRICE,Cheap Pan,,Hearth,cookware,12.3.4,500,,,1");
			bad.push({ line: lines.length, sku: "FR-BAD-PRICE", reason: 'price "12.3.4" is not an amount like 19.99' });
		}
		if (i === 300) {
			lines.push("fr-0042,Twin Pan,,Hearth,cookware,12.00,500,,,1");
			bad.push({ line: lines.length, sku: "fr-0042", reason: `duplicate SKU in the file: first on line 43` });
		}
		if (i === 400) {
			lines.push("FR-BAD-NUL,Nul\u0000Pan,,Hearth,cookware,12.00,500,,,1");
			bad.push({ line: lines.length, sku: "FR-BAD-NUL", reason: "name must not contain control characters (found U+0000)" });
		}
	}
	const path = join(dir, "products.csv");
	writeFileSync(path, `${lines.join("\n")}\n`);
	return { path, bad };
}

/** `npm run import` joining the cluster; asynchronous, so this process's own connections stay alive meanwhile. */
async function runImport(file: string, ...flags: string[]): Promise<{ status: number | null; report: any; stderr: string }> {
	const child = spawn(process.execPath, [join(__dirname, "../../../dist/bin/import.js"), file, "--json", ...flags], {
		env: { ...process.env, ...cluster.nodeEnv(), SERVICES: "", LOG_LEVEL: "warn" },
		stdio: ["ignore", "pipe", "pipe"],
	});
	let stdout = "";
	let stderr = "";
	child.stdout.on("data", b => (stdout += b));
	child.stderr.on("data", b => (stderr += b));
	const [status] = (await once(child, "exit")) as [number | null];
	if (status !== 0 && status !== 2) throw new Error(`import exited ${status}: ${stderr}`);
	return { status, report: JSON.parse(stdout), stderr };
}

let admin: string;

beforeAll(async () => {
	await cluster.start();
	await cluster.waitUntil(async () => (await cluster.http("POST", "/api/v1/auth/login", { body: { email: "x@example.com", password: "nope" } })).status === 401, 60_000, "identity");
	admin = (await cluster.loginAdmin()).accessToken;
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/categories")).status === 200, 60_000, "catalog");
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/search?q=x")).status === 200, 60_000, "search");
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/warehouses", { token: admin })).status === 200, 60_000, "warehouse");
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/orders", { token: admin })).status === 200, 60_000, "orders");
});

afterAll(() => cluster.stop());

it("sets up a shop from nothing: categories, a warehouse, 1,000 imported products; a customer finds one by search and buys it", async () => {
	// Nothing but the first admin.
	expect((await cluster.http("GET", "/api/v1/products")).body.total).toBe(0);
	expect((await cluster.http("GET", "/api/v1/categories")).body).toEqual({ items: [] });
	expect((await cluster.http("GET", "/api/v1/admin/warehouses", { token: admin })).body).toEqual({ items: [] });

	const category = async (slug: string, name: string, parentId?: string) => {
		const r = await cluster.http("POST", "/api/v1/categories", { token: admin, body: { slug, name, ...(parentId && { parentId }) } });
		expect([slug, r.status]).toEqual([slug, 201]);
		return r.body.id as string;
	};
	const kitchen = await category("kitchen", "Kitchen");
	await category("cookware", "Cookware", kitchen);
	await category("knives", "Knives", kitchen);
	await category("garden", "Garden");
	const warehouse = await cluster.http("POST", "/api/v1/admin/warehouses", { token: admin, body: { id: "wh-main", name: "Main warehouse", address: { line1: "600 Port Street", city: "Newark", postalCode: "07114", country: "US" } } });
	expect(warehouse.status).toBe(201);

	const { path, bad } = catalogueFile();
	const dry = await runImport(path, "--dry-run");
	expect(dry.report).toMatchObject({ dryRun: true, rows: GOOD + 4, created: GOOD, refused: bad });
	expect((await cluster.http("GET", "/api/v1/products")).body.total).toBe(0);

	const first = await runImport(path);
	expect(first.status).toBe(2);
	expect(first.report).toMatchObject({ rows: GOOD + 4, created: GOOD, updated: 0, unchanged: 0, stock: { set: GOOD, unchanged: 0 } });
	expect(first.report.refused).toEqual(bad);
	expect(first.stderr).toMatch(/rows \(\d+ % of the file\)/);
	expect((await cluster.http("GET", "/api/v1/products?pageSize=1")).body.total).toBe(GOOD);
	// The tree filters: kitchen covers cookware and knives.
	const inKitchen = (await cluster.http("GET", "/api/v1/products?category=kitchen&pageSize=1")).body.total;
	expect(inKitchen).toBe(Array.from({ length: GOOD }, (_, k) => (k + 1) % 3).filter(s => s !== 2).length);

	const second = await runImport(path);
	expect(second.report).toMatchObject({ created: 0, updated: 0, unchanged: GOOD, stock: { set: 0, unchanged: GOOD } });
	expect(second.report.refused).toEqual(bad);

	// A customer finds it (a typo included) once search has followed the events, and buys two.
	const customer = await cluster.registerCustomer("first-run");
	let hit: any;
	await cluster.waitUntil(
		async () => {
			const r = await cluster.http("GET", "/api/v1/search?q=quokka%20skilet&inStock=true");
			hit = r.body.items?.[0];
			return r.body.total === 1;
		},
		120_000,
		"search to index the imported product with its stock",
	);
	expect(hit).toMatchObject({ sku: "FR-0777", name: "Quokka Cast Iron Skillet", price: { amount: 6799, currency: "USD" }, inStock: true });
	// Search follows the rest of the import as its events arrive; the category filter covers the sub-categories.
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/search?category=kitchen&pageSize=1")).body.total === inKitchen, 120_000, "search to index the whole kitchen");
	const facets = (await cluster.http("GET", "/api/v1/search?pageSize=1")).body.facets.category;
	expect(facets).toEqual(expect.arrayContaining([{ value: "cookware", count: Math.floor(GOOD / 3) }, { value: "garden", count: Math.floor((GOOD + 1) / 3) }]));
	const page = (await cluster.http("GET", `/api/v1/products/${hit.id}`)).body;
	expect(page).toMatchObject({ sku: "FR-0777", availability: { inStock: true, quantity: 22 }, attributes: { sizeCm: 27 } });

	expect((await cluster.http("POST", "/api/v1/cart/items", { token: customer.accessToken, body: { productId: hit.id, quantity: 2 } })).status).toBe(200);
	const rates = await cluster.http("POST", "/api/v1/shipping/rates", { token: customer.accessToken, body: { address: ADDRESS } });
	expect(rates.status).toBe(200);
	expect(rates.body.items.map((r: any) => r.method)).toEqual(["standard", "express"]);
	const placed = await cluster.http("POST", "/api/v1/orders", { token: customer.accessToken, body: { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_visa" }, headers: { "idempotency-key": "first-order" } });
	expect([201, 202]).toContain(placed.status);
	let order: any;
	await cluster.waitUntil(
		async () => {
			order = (await cluster.http("GET", `/api/v1/orders/${placed.body.id}`, { token: customer.accessToken })).body;
			return order.status !== "PENDING";
		},
		60_000,
		"the order to settle",
	);
	expect(order).toMatchObject({ status: "CONFIRMED", items: [{ productId: hit.id, sku: "FR-0777", quantity: 2, unitPrice: { amount: 6799, currency: "USD" } }], payment: { status: "CAPTURED" } });
	expect(order.fulfillments).toHaveLength(1);
	expect((await cluster.http("GET", "/api/v1/admin/inventory/FR-0777", { token: admin })).body.warehouses).toEqual([{ warehouseId: "wh-main", onHand: 20, reserved: 0, available: 20 }]);
});
