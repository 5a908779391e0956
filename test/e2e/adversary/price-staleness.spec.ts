/**
 * Checkout pricing through the per-product cache (lib/catalog/products-by-id.ts) on the cluster
 * topology, with the in-memory cacher and with a shared Redis (its own redis-server). Found by the
 * adversary review of issue 7: with invalidation broadcasts coalesced, an order placed right after
 * an archive's 204 was CONFIRMED at the price before the last change, and with Redis a read racing a
 * change could put the old price back into the shared store for the TTL. Product events are now
 * broadcast at once, before the change's answer leaves, and products live in each process's own
 * memory (lib/cache.ts processCacheFor).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { freePort } from "../../support/ports";
import { SHOP_NODES, TestCluster } from "../support/harness";
import { ADDRESS, FAULT_ENV, log, shopReady } from "./support";

jest.setTimeout(240_000);

describe.each([["memory"], ["redis"]])("prices and status at checkout, %s cacher", kind => {
	let cluster: TestCluster;
	let redis: ChildProcess | undefined;
	let admin: string;
	let customer: any;
	let categoryId: string;
	let seq = 0;

	beforeAll(async () => {
		let env: Record<string, string> = {};
		if (kind === "redis") {
			const port = await freePort();
			redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
			env = { CACHER: `redis://127.0.0.1:${port}/0` };
		}
		cluster = new TestCluster(SHOP_NODES, { ...FAULT_ENV, ...env });
		await cluster.start();
		({ admin } = await shopReady(cluster, 1, 90_000));
		customer = await cluster.registerCustomer();
		categoryId = (await cluster.http("GET", "/api/v1/categories")).body.items[0].id;
	}, 150_000);
	afterAll(async () => {
		await cluster?.stop();
		redis?.kill("SIGKILL");
	});

	async function newProduct(price: number) {
		const sku = `PST-${cluster.id}-${kind}-${++seq}`.toUpperCase();
		const r = await cluster.http("POST", "/api/v1/products", { token: admin, body: { sku, name: `Priced ${seq}`, description: "x", brand: "B", categoryId, price: { amount: price, currency: "USD" } } });
		expect(r.status).toBe(201);
		expect((await cluster.http("PUT", `/api/v1/admin/inventory/${sku}`, { token: admin, body: { warehouseId: "wh-east", onHand: 1000 } })).status).toBe(200);
		return r.body;
	}
	const setPrice = (id: string, amount: number) => cluster.http("PATCH", `/api/v1/products/${id}`, { token: admin, body: { price: { amount, currency: "USD" } } });
	const order = (productId: string, paymentToken: string) =>
		cluster.http("POST", "/api/v1/orders", {
			token: customer.accessToken,
			headers: { "idempotency-key": `pst-${Math.random()}` },
			body: { items: [{ productId, quantity: 1 }], shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken },
		});

	it("an order placed after two quick price changes answered is priced at the last", async () => {
		const p = await newProduct(1000);
		const stale: unknown[] = [];
		for (let i = 1; i <= 10; i++) {
			expect((await order(p.id, "tok_declined")).status).toBe(201); // the commerce node has it cached
			expect((await setPrice(p.id, 1000 + i * 10)).status).toBe(200);
			expect((await setPrice(p.id, 1000 + i * 10 + 1)).status).toBe(200);
			const got = (await order(p.id, "tok_declined")).body.items?.[0]?.unitPrice?.amount;
			if (got !== 1000 + i * 10 + 1) stale.push({ want: 1000 + i * 10 + 1, got });
		}
		log("price-after-change", kind, stale);
		expect(stale).toEqual([]);
	});

	it("an archived product is not sold once the archive has answered, even right after another change", async () => {
		const sold: unknown[] = [];
		for (let i = 0; i < 8; i++) {
			const p = await newProduct(500);
			expect((await order(p.id, "tok_declined")).status).toBe(201);
			expect((await setPrice(p.id, 501)).status).toBe(200);
			expect((await cluster.http("DELETE", `/api/v1/products/${p.id}`, { token: admin })).status).toBe(204);
			const o = await order(p.id, "tok_visa");
			if (o.body.status === "CONFIRMED") sold.push({ id: p.id, unitPrice: o.body.items?.[0]?.unitPrice });
		}
		expect(sold).toEqual([]);
	});

	it("no stale price after a change while other checkouts keep reading the product", async () => {
		const p = await newProduct(2000);
		let stop = false;
		const readers = Array.from({ length: 4 }, async () => {
			while (!stop) await order(p.id, "tok_declined");
		});
		const stale: unknown[] = [];
		try {
			for (let i = 1; i <= 10; i++) {
				expect((await setPrice(p.id, 2000 + i)).status).toBe(200);
				const got = (await order(p.id, "tok_declined")).body.items?.[0]?.unitPrice?.amount;
				if (got !== 2000 + i) stale.push({ want: 2000 + i, got });
			}
		} finally {
			stop = true;
			await Promise.all(readers);
		}
		expect(stale).toEqual([]);
	});
});
