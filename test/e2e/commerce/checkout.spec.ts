/**
 * Checkout through the gateway with every service group in its own process over NATS (JetStream
 * events) and PostgreSQL: the saga's outcomes, cancel, idempotency, and the stock and money
 * invariants of DOMAIN.md under 200 concurrent checkouts.
 */
import { SHOP_NODES, TestCluster } from "../support/harness";

jest.setTimeout(240_000);

const cluster = new TestCluster(
	SHOP_NODES,
	{ AUTH_RATE_LIMIT_MAX: "10000", RATE_LIMIT_MAX: "1000000", CHECKOUT_WAIT_MS: "4000" },
);

const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
let admin: string;
let buyer: { accessToken: string; customer: { id: string } };
let product: { id: string; sku: string; price: { amount: number } };

beforeAll(async () => {
	await cluster.start();
	admin = await cluster.waitForShop();
	buyer = await cluster.registerCustomer("buyer");
	product = (await cluster.http("GET", "/api/v1/products?category=headphones&pageSize=1")).body.items[0];
});

afterAll(() => cluster.stop());

async function order(token: string, body: Record<string, unknown>, key = `k-${Math.random()}`) {
	return cluster.http("POST", "/api/v1/orders", { token, body, headers: { "idempotency-key": key } });
}

async function settled(token: string, id: string) {
	let o: any;
	await cluster.waitUntil(async () => {
		o = (await cluster.http("GET", `/api/v1/orders/${id}`, { token })).body;
		return !["PENDING"].includes(o.status);
	}, 60_000, `order ${id} to settle`);
	return o;
}

const checkoutBody = (token = "tok_visa", quantity = 1) => ({ shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: token, items: [{ productId: product.id, quantity }] });

describe("checkout saga", () => {
	it("confirms an order, then ships and delivers it", async () => {
		const res = await order(buyer.accessToken, checkoutBody());
		expect([201, 202]).toContain(res.status);
		const o = await settled(buyer.accessToken, res.body.id);
		expect(o).toMatchObject({ status: "CONFIRMED", failureReason: null, payment: { status: "CAPTURED" }, total: { amount: product.price.amount + o.shipping.amount + o.tax.amount, currency: "USD" } });
		expect(o.items).toEqual([expect.objectContaining({ productId: product.id, sku: product.sku, quantity: 1, unitPrice: product.price })]);
		expect(o.fulfillments.length).toBeGreaterThanOrEqual(1);

		for (const f of o.fulfillments) {
			for (const verb of ["pick", "pack", "ship", "deliver"]) {
				const r = await cluster.http("POST", `/api/v1/admin/fulfillments/${f.id}/${verb}`, { token: admin });
				expect(r.status).toBe(200);
			}
			expect((await cluster.http("POST", `/api/v1/admin/fulfillments/${f.id}/pick`, { token: admin })).status).toBe(409);
		}
		await cluster.waitUntil(async () => (await cluster.http("GET", `/api/v1/orders/${o.id}`, { token: buyer.accessToken })).body.status === "DELIVERED", 20_000, "DELIVERED");
		const delivered = (await cluster.http("GET", `/api/v1/orders/${o.id}`, { token: buyer.accessToken })).body;
		expect(delivered.history.map((h: any) => h.status)).toEqual(["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED"]);
		const tracking = await cluster.http("GET", `/api/v1/shipments/${delivered.fulfillments[0].trackingNumber}`);
		expect(tracking.status).toBe(200);
		await cluster.waitUntil(async () => (await cluster.http("GET", `/api/v1/shipments/${delivered.fulfillments[0].trackingNumber}`)).body.status === "DELIVERED", 20_000, "tracking");
		// Shipped goods cannot be cancelled.
		expect((await cluster.http("POST", `/api/v1/orders/${o.id}/cancel`, { token: buyer.accessToken })).body.type).toBe("NOT_CANCELLABLE");
	});

	it.each([
		["tok_declined", "PAYMENT_DECLINED", "FAILED"],
		["tok_insufficient_funds", "INSUFFICIENT_FUNDS", "FAILED"],
		["tok_capture_fails", "PAYMENT_DECLINED", "VOIDED"],
	])("rejects with %s and undoes every step", async (token, reason, paymentStatus) => {
		const before = (await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin })).body;
		const res = await order(buyer.accessToken, checkoutBody(token));
		const o = await settled(buyer.accessToken, res.body.id);
		expect(o).toMatchObject({ status: "REJECTED", failureReason: reason, payment: { status: paymentStatus } });
		expect(o.fulfillments.every((f: any) => f.status === "CANCELLED")).toBe(true);
		expect((await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin })).body).toEqual(before);
	});

	it("rejects OUT_OF_STOCK when the stock is not there", async () => {
		const res = await order(buyer.accessToken, checkoutBody("tok_visa", 99));
		const o = await settled(buyer.accessToken, res.body.id);
		expect(o).toMatchObject({ status: "REJECTED", failureReason: "OUT_OF_STOCK", payment: { status: "VOIDED" } });
	});

	it("cancels a confirmed order: refunded and stock back", async () => {
		const before = (await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin })).body;
		const o = await settled(buyer.accessToken, (await order(buyer.accessToken, checkoutBody())).body.id);
		expect(o.status).toBe("CONFIRMED");
		const other = await cluster.registerCustomer();
		expect((await cluster.http("POST", `/api/v1/orders/${o.id}/cancel`, { token: other.accessToken })).status).toBe(404);
		expect((await cluster.http("GET", `/api/v1/orders/${o.id}`, { token: other.accessToken })).status).toBe(404);
		const cancelled = await cluster.http("POST", `/api/v1/orders/${o.id}/cancel`, { token: buyer.accessToken });
		expect(cancelled.status).toBe(200);
		expect(cancelled.body.status).toBe("CANCELLED");
		const payments = (await cluster.http("GET", `/api/v1/admin/payments?orderId=${o.id}`, { token: admin })).body.items;
		expect(payments).toEqual([expect.objectContaining({ status: "REFUNDED", captured: o.total, refunded: o.total })]);
		expect((await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin })).body).toEqual(before);
	});
});

describe("idempotency and bad input", () => {
	it("replays the first answer for the same key and body, refuses another body, makes one order of 20 concurrent requests", async () => {
		const first = await order(buyer.accessToken, checkoutBody(), "same-key-1");
		const again = await order(buyer.accessToken, checkoutBody(), "same-key-1");
		expect(again.status).toBe(first.status);
		expect(again.body).toEqual(first.body);
		const other = await order(buyer.accessToken, checkoutBody("tok_mastercard"), "same-key-1");
		expect(other.status).toBe(422);
		expect(other.body.type).toBe("IDEMPOTENCY_KEY_REUSED");

		const c = await cluster.registerCustomer();
		const burst = await Promise.all(Array.from({ length: 20 }, () => order(c.accessToken, checkoutBody(), "burst-key")));
		const ok = burst.filter(r => r.status === 201 || r.status === 202);
		expect(new Set(ok.map(r => r.body.id)).size).toBe(1);
		expect(burst.every(r => [201, 202, 409].includes(r.status))).toBe(true);
		expect((await cluster.http("GET", "/api/v1/orders", { token: c.accessToken })).body.total).toBe(1);
	});

	it("answers 4xx for bad checkouts and writes nothing", async () => {
		const c = await cluster.registerCustomer();
		expect((await cluster.http("POST", "/api/v1/orders", { token: c.accessToken, body: checkoutBody() })).status).toBe(400);
		expect((await order(c.accessToken, checkoutBody(), "x".repeat(256))).status).toBe(400);
		for (const body of [
			{ ...checkoutBody(), paymentToken: "tok_bogus" },
			{ ...checkoutBody(), shippingMethod: "teleport" },
			{ ...checkoutBody(), items: [{ productId: product.id, quantity: 0 }] },
			{ ...checkoutBody(), items: [{ productId: product.id, quantity: "two" }] },
			{ ...checkoutBody(), total: 1 },
			{ ...checkoutBody(), shippingAddress: { ...ADDRESS, country: "USA" } },
			{ shippingMethod: "standard", paymentToken: "tok_visa" },
		]) {
			expect((await order(c.accessToken, body)).status).toBe(422);
		}
		expect((await order(c.accessToken, { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_visa" })).body.type).toBe("EMPTY_CART");
		expect((await cluster.http("GET", "/api/v1/orders", { token: c.accessToken })).body.total).toBe(0);
		expect((await cluster.http("POST", "/api/v1/cart/items", { token: c.accessToken, body: { productId: product.id, quantity: 100 } })).status).toBe(422);
		expect((await cluster.http("POST", "/api/v1/cart/items", { token: c.accessToken, body: { productId: "nope", quantity: 1 } })).status).toBe(404);
		expect((await cluster.http("GET", "/api/v1/cart", { token: c.accessToken })).body).toEqual({ items: [], subtotal: { amount: 0, currency: "USD" }, itemCount: 0 });
		expect((await cluster.http("PUT", `/api/v1/admin/inventory/${product.sku}`, { token: admin, body: { warehouseId: "wh-east", onHand: -5 } })).status).toBe(422);
		expect((await cluster.http("GET", "/api/v1/admin/orders", { token: c.accessToken })).status).toBe(403);
	});
});

describe("200 concurrent checkouts for 50 units", () => {
	it("confirms exactly 50, never goes negative, and balances the money", async () => {
		const categories = (await cluster.http("GET", "/api/v1/categories")).body.items;
		const p = await cluster.http("POST", "/api/v1/products", { token: admin, body: { sku: `RUSH-${cluster.id.toUpperCase()}`, name: "Limited Edition Headphones", brand: "Aurora", categoryId: categories[0].id, price: { amount: 4999, currency: "USD" }, weightGrams: 300 } });
		expect(p.status).toBe(201);
		expect((await cluster.http("PUT", `/api/v1/admin/inventory/${p.body.sku}`, { token: admin, body: { warehouseId: "wh-east", onHand: 30 } })).status).toBe(200);
		expect((await cluster.http("PUT", `/api/v1/admin/inventory/${p.body.sku}`, { token: admin, body: { warehouseId: "wh-west", onHand: 20 } })).status).toBe(200);

		const customers = await Promise.all(Array.from({ length: 10 }, (_, i) => cluster.registerCustomer(`rush${i}`)));
		const body = { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: p.body.id, quantity: 1 }] };
		const responses = await Promise.all(Array.from({ length: 200 }, (_, i) => order(customers[i % 10].accessToken, body, `rush-${i}`)));
		expect(responses.every(r => r.status === 201 || r.status === 202)).toBe(true);
		const orders = await Promise.all(responses.map((r, i) => settled(customers[i % 10].accessToken, r.body.id)));

		const confirmed = orders.filter(o => o.status === "CONFIRMED");
		expect(confirmed).toHaveLength(50);
		expect(orders.filter(o => o.status === "REJECTED").every(o => o.failureReason === "OUT_OF_STOCK")).toBe(true);

		// Invariants 1 and 2, from the warehouse's own data.
		const stock = (await cluster.http("GET", `/api/v1/admin/inventory/${p.body.sku}`, { token: admin })).body.warehouses;
		for (const w of stock) expect(w.onHand).toBeGreaterThanOrEqual(w.reserved);
		expect(stock.reduce((n: number, w: any) => n + w.onHand, 0)).toBe(0);
		expect(stock.every((w: any) => w.reserved === 0)).toBe(true);

		// Invariant 3, from the payments service's own data.
		for (const o of orders) {
			const pays = (await cluster.http("GET", `/api/v1/admin/payments?orderId=${o.id}`, { token: admin })).body.items;
			const net = pays.reduce((n: number, x: any) => n + x.captured.amount - x.refunded.amount, 0);
			expect(net).toBe(o.status === "CONFIRMED" ? o.total.amount : 0);
			expect(pays.some((x: any) => x.status === "AUTHORIZED")).toBe(false);
		}
	});
});
