/**
 * How the demo catalog gets in: an embedded start with every available service (what `npm start`
 * runs) loads it when SEED_DEMO is true; a restart with products present loads nothing; the seed
 * action fills in what is missing; two catalogs seeding one PostgreSQL database at once insert
 * everything once; and `npm run seed` (bin/seed.ts) joins a cluster over NATS to do it.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import type { ServiceBroker } from "moleculer";
import { DEMO_CATEGORIES, DEMO_PRODUCTS } from "../../../lib/catalog/demo-data";
import { useTestEnv } from "../../support/env";
import { PG_URL, dropDatabases, pgPrefix } from "../events/helpers";
import { gatewayClient, productCount } from "./support";

jest.setTimeout(180_000);

const ns = (tag: string) => `${tag}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const load = () => require("../../../lib/broker") as typeof import("../../../lib/broker");

describe("embedded start with SEED_DEMO=true", () => {
	let broker: ServiceBroker;
	let services: string[];

	beforeAll(async () => {
		useTestEnv({ SEED_DEMO: "true", RATE_LIMIT_MAX: "100000" });
		services = (require("../../../services") as typeof import("../../../services")).availableServices();
		// As bin/start.ts does with no SERVICES: every service there is, in one process.
		broker = load().createBroker(services, { logger: false, namespace: ns("embedded") });
		await broker.start();
	});

	afterAll(() => broker?.stop());

	it("serves the demo catalog from the gateway as soon as the node has started", async () => {
		const http = gatewayClient(broker);
		const list = await http("GET", "/products?pageSize=100");
		expect([list.status, list.body.total, list.body.items.length]).toEqual([200, DEMO_PRODUCTS.length, 100]);
		expect((await http("GET", "/categories")).body.items).toHaveLength(DEMO_CATEGORIES.length);
		const page = await http("GET", `/products/${DEMO_PRODUCTS[0].id}`);
		expect(page.status).toBe(200);
		expect(page.body).toMatchObject({ id: DEMO_PRODUCTS[0].id, sku: DEMO_PRODUCTS[0].sku, price: DEMO_PRODUCTS[0].price });
		// With the reviews and warehouse services running, the page carries their answers.
		if (services.includes("reviews")) expect(page.body.rating).toEqual({ average: 0, count: 0 });
		if (services.includes("warehouse")) expect(page.body.availability).toEqual({ inStock: true, quantity: expect.any(Number) });
	});
});

describe("first start and the seed action", () => {
	it("loads the demo only into an empty catalog, and seedDemo inserts just what is missing", async () => {
		useTestEnv({ SEED_DEMO: "true" });
		const namespace = ns("restart");
		let broker = load().createBroker(["catalog"], { logger: false, namespace });
		await broker.start();
		expect(await productCount(broker)).toBe(DEMO_PRODUCTS.length);
		// A product missing from a non-empty catalog (here deleted under the service's feet).
		await (broker.getLocalService("catalog") as any).models.Product.destroy({ where: { sku: DEMO_PRODUCTS[7].sku } });
		await broker.stop();

		broker = load().createBroker(["catalog"], { logger: false, namespace });
		await broker.start();
		try {
			expect(await productCount(broker)).toBe(DEMO_PRODUCTS.length - 1);
			expect(await broker.call("catalog.seedDemo")).toEqual({ categories: 0, products: 1 });
			expect(await broker.call("catalog.seedDemo")).toEqual({ categories: 0, products: 0 });
			const [back]: any[] = await broker.call("catalog.getMany", { ids: [DEMO_PRODUCTS[7].id] });
			expect(back).toMatchObject({ id: DEMO_PRODUCTS[7].id, sku: DEMO_PRODUCTS[7].sku, status: "active" });
		} finally {
			await broker.stop();
		}
	});

	it("inserts everything once when two catalogs seed one PostgreSQL database at the same moment", async () => {
		const prefix = pgPrefix("catseed");
		useTestEnv({ SEED_DEMO: "false", DATABASE_URL: PG_URL, DB_NAME_PREFIX: prefix });
		const a = load().createBroker(["catalog"], { logger: false, namespace: ns("seed-a"), nodeID: "seed-a" });
		const b = load().createBroker(["catalog"], { logger: false, namespace: ns("seed-b"), nodeID: "seed-b" });
		try {
			await Promise.all([a.start(), b.start()]);
			expect(await productCount(a)).toBe(0);
			const results = await Promise.all([a.call("catalog.seedDemo"), b.call("catalog.seedDemo")]);
			const total = (results as { categories: number; products: number }[]).reduce((s, r) => ({ categories: s.categories + r.categories, products: s.products + r.products }));
			expect(total).toEqual({ categories: DEMO_CATEGORIES.length, products: DEMO_PRODUCTS.length });
			expect(await productCount(b)).toBe(DEMO_PRODUCTS.length);
		} finally {
			await Promise.all([a.stop(), b.stop()]);
			await dropDatabases(prefix);
			// useTestEnv only adds variables: the tests after this one run on SQLite again.
			delete process.env.DATABASE_URL;
			delete process.env.DB_NAME_PREFIX;
		}
	});
});

describe("npm run seed (bin/seed.ts)", () => {
	const NATS = "nats://127.0.0.1:4222";
	const namespace = ns("seedcli");
	const warehouse = { mode: "absent" as "absent" | "ok" | "fail", calls: 0 };
	let broker: ServiceBroker;

	function runSeed(): Promise<{ code: number | null; stdout: string; stderr: string }> {
		const tsx = join(__dirname, "../../../node_modules/.bin/tsx");
		const child = spawn(tsx, [join(__dirname, "../../../bin/seed.ts")], {
			env: { ...process.env, TRANSPORTER: NATS, NAMESPACE: namespace, SERVICES: "", LOG_LEVEL: "warn" },
			stdio: ["ignore", "pipe", "pipe"],
		});
		let stdout = "";
		let stderr = "";
		child.stdout.on("data", d => (stdout += d));
		child.stderr.on("data", d => (stderr += d));
		return new Promise(resolve => child.on("close", code => resolve({ code, stdout, stderr })));
	}

	beforeAll(async () => {
		useTestEnv({ SEED_DEMO: "false", TRANSPORTER: NATS, NAMESPACE: namespace });
		broker = load().createBroker(["catalog"], { logger: false, nodeID: `catalog-${namespace}` });
		await broker.start();
	});

	afterAll(() => broker?.stop());

	it("joins the cluster, seeds the catalog once, and says there is no warehouse", async () => {
		const first = await runSeed();
		expect([first.code, first.stderr]).toEqual([0, ""]);
		expect(first.stdout).toBe(`catalog: {"categories":${DEMO_CATEGORIES.length},"products":${DEMO_PRODUCTS.length}}\nwarehouse: not running in this cluster, no stock seeded\n`);
		expect(await productCount(broker)).toBe(DEMO_PRODUCTS.length);
		const second = await runSeed();
		expect([second.code, second.stdout.split("\n")[0]]).toEqual([0, 'catalog: {"categories":0,"products":0}']);
	});

	it("seeds the warehouse when it runs, and fails loudly when that fails", async () => {
		broker.createService({
			name: "warehouse",
			actions: {
				seedDemo() {
					warehouse.calls++;
					if (warehouse.mode === "fail") throw new Error("stock table on fire");
					return { stockRows: 2 * DEMO_PRODUCTS.length };
				},
			},
		});
		await broker.waitForServices(["warehouse"], 10_000);
		warehouse.mode = "ok";
		const ok = await runSeed();
		expect([ok.code, ok.stdout]).toEqual([0, `catalog: {"categories":0,"products":0}\nwarehouse: {"stockRows":${2 * DEMO_PRODUCTS.length}}\n`]);
		warehouse.mode = "fail";
		const failed = await runSeed();
		expect(failed.code).toBe(1);
		expect(failed.stderr).toMatch(/Seeding failed: stock table on fire/);
		expect(warehouse.calls).toBe(2);
	});
});
