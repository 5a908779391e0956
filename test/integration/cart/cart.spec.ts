/**
 * The cart through the real gateway, on SQLite and PostgreSQL: flows, current prices, bad input
 * that changes nothing, ownership, concurrent adds, and the clear on orders.order.confirmed.
 */
import type { ServiceBroker, ServiceSchema } from "moleculer";
import type { Transaction } from "sequelize";
import { useTestEnv } from "../../support/env";
import { PG_URL, dropDatabases, pgPrefix, waitFor } from "../events/helpers";
import { type FakeProduct, adminToken, customerToken, fakeAuth, fakeCatalog, httpClient, product } from "./fakes";

jest.setTimeout(60_000);

/** Records orders.order.confirmed the way the orders service does (outbox, in a transaction). */
function ordersStandIn(): ServiceSchema {
	const { DbMixin } = require("../../../mixins/db.mixin");
	const { OutboxMixin, outboxMigrations } = require("../../../mixins/outbox.mixin");
	return {
		name: "cartordersfake",
		mixins: [DbMixin({ name: "cartordersfake", migrations: [...outboxMigrations], models: () => ({}) }), OutboxMixin],
		actions: {
			confirm: {
				params: { orderId: "string", customerId: "string", productIds: { type: "array", items: "string" }, holdMs: "number|optional" },
				handler(this: any, ctx: any) {
					const items = ctx.params.productIds.map((productId: string) => ({ productId, sku: `SKU-${productId}`, quantity: 1 }));
					return this.transaction(async (t: Transaction) => {
						const event = await this.recordEvent(t, "orders.order.confirmed", { orderId: ctx.params.orderId, customerId: ctx.params.customerId, status: "CONFIRMED", items, total: { amount: 1, currency: "USD" } });
						// The confirmation's time is taken; its commit (and delivery) comes later.
						if (ctx.params.holdMs) await new Promise(r => setTimeout(r, ctx.params.holdMs));
						return event;
					});
				},
			},
		},
	};
}

const usd = (amount: number) => ({ amount, currency: "USD" });
const line = (p: FakeProduct, quantity: number, unit = p.price.amount) => ({ productId: p.id, name: p.name, unitPrice: usd(unit), quantity, lineTotal: usd(unit * quantity) });
const EMPTY = { items: [], subtotal: usd(0), itemCount: 0 };

describe.each([
	["SQLite", {}],
	["PostgreSQL", { DATABASE_URL: PG_URL, DB_NAME_PREFIX: pgPrefix("cart") }],
])("the cart on %s", (_db, env: Record<string, string>) => {
	let broker: ServiceBroker;
	// What the real catalog's product events clean (lib/cache.ts INVALIDATES): cached carts and the per-product cache.
	const cleanCachedCarts = () => (require("../../../lib/cache") as typeof import("../../../lib/cache")).cleanFor(broker, ["catalog.product.updated"]);
	let http: ReturnType<typeof httpClient>;
	const products = new Map<string, FakeProduct>();
	const mug = product("mug", 1250);
	const lamp = product("lamp", 4999);
	const old = product("old", 700, 500, "archived");
	for (const p of [mug, lamp, old]) products.set(p.id, p);
	const alice = { id: "cust-alice", token: "" };
	const bob = { id: "cust-bob", token: "" };
	let n = 0;
	/** A customer of this test only. */
	const fresh = () => {
		const id = `cust-${++n}`;
		return { id, token: customerToken(id) };
	};

	beforeAll(async () => {
		useTestEnv({ ...env, EVENTS_POLL_MS: "100" });
		const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
		broker = createBroker(["api", "cart"], { logger: false, namespace: `cart-${Math.random().toString(36).slice(2)}` });
		broker.createService(fakeCatalog(products));
		broker.createService(fakeAuth);
		broker.createService(ordersStandIn());
		await broker.start();
		http = httpClient(broker);
		alice.token = customerToken(alice.id);
		bob.token = customerToken(bob.id);
	});

	afterAll(async () => {
		await broker?.stop();
		if (env.DATABASE_URL) await dropDatabases(env.DB_NAME_PREFIX);
	});

	it("adds products, adds quantities to a line already there, and prices everything at the catalog's current price", async () => {
		const c = fresh();
		expect(await http("GET", "/api/v1/cart", { token: c.token })).toEqual({ status: 200, body: EMPTY });
		expect(await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: mug.id, quantity: 2 } })).toEqual({
			status: 200,
			body: { items: [line(mug, 2)], subtotal: usd(2500), itemCount: 2 },
		});
		await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: lamp.id, quantity: 1 } });
		expect((await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: mug.id, quantity: 3 } })).body).toEqual({
			items: [line(mug, 5), line(lamp, 1)],
			subtotal: usd(5 * 1250 + 4999),
			itemCount: 6,
		});

		products.set(mug.id, { ...mug, price: usd(1000) });
		// The real catalog's update event cleans the cached products and carts; the fake one changes silently.
		await cleanCachedCarts();
		try {
			expect((await http("GET", "/api/v1/cart", { token: c.token })).body).toEqual({ items: [line(mug, 5, 1000), line(lamp, 1)], subtotal: usd(5000 + 4999), itemCount: 6 });
		} finally {
			products.set(mug.id, mug);
			await cleanCachedCarts();
		}
	});

	it("sets quantities (0 removes), removes lines and clears the cart", async () => {
		const c = fresh();
		await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: mug.id, quantity: 1 } });
		await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: lamp.id, quantity: 1 } });
		expect(await http("PATCH", `/api/v1/cart/items/${mug.id}`, { token: c.token, body: { quantity: 99 } })).toEqual({
			status: 200,
			body: { items: [line(mug, 99), line(lamp, 1)], subtotal: usd(99 * 1250 + 4999), itemCount: 100 },
		});
		expect((await http("PATCH", `/api/v1/cart/items/${mug.id}`, { token: c.token, body: { quantity: 0 } })).body).toEqual({ items: [line(lamp, 1)], subtotal: usd(4999), itemCount: 1 });
		expect(await http("PATCH", `/api/v1/cart/items/${mug.id}`, { token: c.token, body: { quantity: 0 } })).toEqual({ status: 200, body: { items: [line(lamp, 1)], subtotal: usd(4999), itemCount: 1 } });
		expect(await http("PATCH", `/api/v1/cart/items/${mug.id}`, { token: c.token, body: { quantity: 3 } })).toMatchObject({ status: 404, body: { code: 404, type: "CART_ITEM_NOT_FOUND" } });
		expect(await http("DELETE", `/api/v1/cart/items/${lamp.id}`, { token: c.token })).toEqual({ status: 200, body: EMPTY });
		await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: lamp.id, quantity: 4 } });
		expect(await http("DELETE", "/api/v1/cart", { token: c.token })).toEqual({ status: 204, body: null });
		expect((await http("GET", "/api/v1/cart", { token: c.token })).body).toEqual(EMPTY);
	});

	it("refuses bad input with 4xx in the API's error shape and changes nothing", async () => {
		const c = fresh();
		await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: mug.id, quantity: 90 } });
		const before = (await http("GET", "/api/v1/cart", { token: c.token })).body;
		expect(before).toEqual({ items: [line(mug, 90)], subtotal: usd(90 * 1250), itemCount: 90 });

		const invalid = [
			{ productId: lamp.id, quantity: 0 },
			{ productId: lamp.id, quantity: 100 },
			{ productId: lamp.id, quantity: -1 },
			{ productId: lamp.id, quantity: "x" },
			{ productId: lamp.id, quantity: "1" },
			{ productId: lamp.id, quantity: 1.5 },
			{ productId: lamp.id },
			{ quantity: 1 },
			{ productId: "", quantity: 1 },
			{ productId: lamp.id, quantity: 1, price: 1 },
			{ productId: lamp.id, quantity: 1, customerId: bob.id },
		];
		for (const body of invalid) {
			const res = await http("POST", "/api/v1/cart/items", { token: c.token, body });
			expect({ body, status: res.status, type: res.body.type }).toEqual({ body, status: 422, type: "VALIDATION_ERROR" });
			expect(res.body).toEqual({ name: "ValidationError", message: expect.any(String), code: 422, type: "VALIDATION_ERROR", data: expect.arrayContaining([expect.objectContaining({ field: expect.any(String), message: expect.any(String) })]) });
		}
		// 90 + 10 would be 100.
		expect(await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: mug.id, quantity: 10 } })).toEqual({
			status: 422,
			body: { name: "ValidationError", message: "At most 99 of one product", code: 422, type: "VALIDATION_ERROR", data: [{ field: "quantity", message: "the cart would hold 100; at most 99" }] },
		});
		for (const productId of ["no-such-product", old.id]) {
			expect(await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId, quantity: 1 } })).toEqual({
				status: 404,
				body: { name: "NotFoundError", message: "Product not found", code: 404, type: "PRODUCT_NOT_FOUND" },
			});
		}
		for (const quantity of [100, -1, "x", 2.5]) {
			expect((await http("PATCH", `/api/v1/cart/items/${mug.id}`, { token: c.token, body: { quantity } })).status).toBe(422);
		}
		expect((await http("PATCH", `/api/v1/cart/items/${mug.id}`, { token: c.token, body: { quantity: 5, name: "x" } })).status).toBe(422);
		expect((await http("POST", "/api/v1/cart/items", { token: c.token, raw: "{ not json" })).status).toBe(400);
		expect(await http("GET", "/api/v1/cart", { token: c.token })).toEqual({ status: 200, body: before });
		expect(await broker.call("cart.getForCheckout", { customerId: c.id })).toEqual({ items: [{ productId: mug.id, quantity: 90 }] });
	});

	it("answers only customers: 401 without a token, 403 for an admin", async () => {
		expect(await http("GET", "/api/v1/cart")).toMatchObject({ status: 401, body: { code: 401 } });
		expect(await http("POST", "/api/v1/cart/items", { body: { productId: mug.id, quantity: 1 } })).toMatchObject({ status: 401 });
		expect(await http("GET", "/api/v1/cart", { token: adminToken("adm-1", ["superadmin"]) })).toMatchObject({ status: 403, body: { code: 403 } });
		// The service checks again when called without the gateway.
		await expect(broker.call("cart.get", {}, { meta: { user: { id: "adm-1", typ: "admin", roles: ["superadmin"] } } })).rejects.toMatchObject({ code: 403 });
		await expect(broker.call("cart.get")).rejects.toMatchObject({ code: 401 });
	});

	it("never shows, changes or clears one customer's cart for another", async () => {
		await http("POST", "/api/v1/cart/items", { token: alice.token, body: { productId: mug.id, quantity: 3 } });
		const aliceCart = (await http("GET", "/api/v1/cart", { token: alice.token })).body;
		expect(aliceCart).toEqual({ items: [line(mug, 3)], subtotal: usd(3750), itemCount: 3 });

		expect((await http("GET", "/api/v1/cart", { token: bob.token })).body).toEqual(EMPTY);
		expect((await http("PATCH", `/api/v1/cart/items/${mug.id}`, { token: bob.token, body: { quantity: 7 } })).status).toBe(404);
		expect((await http("DELETE", `/api/v1/cart/items/${mug.id}`, { token: bob.token })).body).toEqual(EMPTY);
		expect((await http("DELETE", "/api/v1/cart", { token: bob.token })).status).toBe(204);
		await http("POST", "/api/v1/cart/items", { token: bob.token, body: { productId: mug.id, quantity: 1 } });
		expect((await http("GET", "/api/v1/cart", { token: bob.token })).body).toEqual({ items: [line(mug, 1)], subtotal: usd(1250), itemCount: 1 });

		expect((await http("GET", "/api/v1/cart", { token: alice.token })).body).toEqual(aliceCart);
	});

	it("drops products that were archived from the cart's view and from what checkout gets", async () => {
		const c = fresh();
		const soon = product("soon-gone", 300);
		products.set(soon.id, soon);
		await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: soon.id, quantity: 2 } });
		await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: lamp.id, quantity: 1 } });
		products.set(soon.id, { ...soon, status: "archived" });
		// The real catalog's archival event cleans cached carts (lib/cache.ts); the fake one changes silently.
		await cleanCachedCarts();
		expect((await http("GET", "/api/v1/cart", { token: c.token })).body).toEqual({ items: [line(lamp, 1)], subtotal: usd(4999), itemCount: 1 });
		expect(await broker.call("cart.getForCheckout", { customerId: c.id })).toEqual({ items: [{ productId: lamp.id, quantity: 1 }] });
		// Back on sale, it is back in the cart.
		products.set(soon.id, soon);
		await cleanCachedCarts();
		expect((await http("GET", "/api/v1/cart", { token: c.token })).body.itemCount).toBe(3);
	});

	it("adds concurrent requests up exactly and never past 99", async () => {
		const c = fresh();
		const as = { meta: { user: { id: c.id, typ: "customer", roles: [] } } };
		const add = (quantity: number) => broker.call("cart.addItem", { productId: lamp.id, quantity }, as);
		const first = await Promise.allSettled(Array.from({ length: 10 }, () => add(5)));
		expect(first.filter(r => r.status === "fulfilled")).toHaveLength(10);
		expect(await broker.call("cart.getForCheckout", { customerId: c.id })).toEqual({ items: [{ productId: lamp.id, quantity: 50 }] });

		const second = await Promise.allSettled(Array.from({ length: 20 }, () => add(5)));
		const refused = second.filter(r => r.status === "rejected") as PromiseRejectedResult[];
		expect(second.filter(r => r.status === "fulfilled")).toHaveLength(9);
		expect(refused.map(r => r.reason.code)).toEqual(Array(11).fill(422));
		expect(await broker.call("cart.getForCheckout", { customerId: c.id })).toEqual({ items: [{ productId: lamp.id, quantity: 95 }] });

		const d = fresh();
		const racers = await Promise.allSettled(Array.from({ length: 8 }, () => broker.call("cart.addItem", { productId: mug.id, quantity: 3 }, { meta: { user: { id: d.id, typ: "customer", roles: [] } } })));
		expect(racers.filter(r => r.status === "fulfilled")).toHaveLength(8);
		expect(await broker.call("cart.getForCheckout", { customerId: d.id })).toEqual({ items: [{ productId: mug.id, quantity: 24 }] });
	});

	it("empties the customer's cart when their order is confirmed, and only theirs", async () => {
		const c = fresh();
		const other = fresh();
		for (const who of [c, other]) {
			await http("POST", "/api/v1/cart/items", { token: who.token, body: { productId: mug.id, quantity: 1 } });
			await http("POST", "/api/v1/cart/items", { token: who.token, body: { productId: lamp.id, quantity: 2 } });
		}
		await broker.call("cartordersfake.confirm", { orderId: `order-${c.id}`, customerId: c.id, productIds: [mug.id] });
		await waitFor(async () => ((await http("GET", "/api/v1/cart", { token: c.token })).body.itemCount === 0 ? true : undefined));
		expect((await http("GET", "/api/v1/cart", { token: c.token })).body).toEqual(EMPTY);
		expect((await http("GET", "/api/v1/cart", { token: other.token })).body).toEqual({ items: [line(mug, 1), line(lamp, 2)], subtotal: usd(1250 + 9998), itemCount: 3 });
	});

	it("keeps a line whose quantity the customer changed after the confirmation; clears the others", async () => {
		const c = fresh();
		await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: mug.id, quantity: 1 } });
		await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: lamp.id, quantity: 2 } });
		// Confirmed now, delivered only after the customer raised the mug to 3.
		const confirmed = broker.call("cartordersfake.confirm", { orderId: `order-late-${c.id}`, customerId: c.id, productIds: [mug.id, lamp.id], holdMs: 400 });
		await new Promise(r => setTimeout(r, 100));
		expect((await http("PATCH", `/api/v1/cart/items/${mug.id}`, { token: c.token, body: { quantity: 3 } })).status).toBe(200);
		await confirmed;
		await waitFor(async () => ((await http("GET", "/api/v1/cart", { token: c.token })).body.itemCount === 3 ? true : undefined));
		expect((await http("GET", "/api/v1/cart", { token: c.token })).body).toEqual({ items: [line(mug, 3)], subtotal: usd(3 * 1250), itemCount: 3 });
	});

	it("serves checkout its lines and clears a cart for another service", async () => {
		const c = fresh();
		await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: lamp.id, quantity: 2 } });
		await http("POST", "/api/v1/cart/items", { token: c.token, body: { productId: mug.id, quantity: 1 } });
		expect(await broker.call("cart.getForCheckout", { customerId: c.id })).toEqual({ items: [{ productId: lamp.id, quantity: 2 }, { productId: mug.id, quantity: 1 }] });
		expect(await broker.call("cart.clearFor", { customerId: c.id })).toEqual({ removed: 2 });
		expect(await broker.call("cart.clearFor", { customerId: c.id })).toEqual({ removed: 0 });
		expect(await broker.call("cart.getForCheckout", { customerId: c.id })).toEqual({ items: [] });
	});
});
