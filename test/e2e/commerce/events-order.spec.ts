/**
 * Issue 8 in a real cluster: two commerce and two inventory replicas over NATS JetStream and
 * PostgreSQL. Operators ship and deliver every parcel about 100 ms apart while nodes are paused
 * (SIGSTOP/SIGCONT) for a few seconds: every delivered order ends DELIVERED with its whole history,
 * none stays SHIPPED. Then read-your-writes on ship/deliver/review, and operators' refunds against
 * the order's state (full refund before shipment cancels with stock back, ship after it is 409, a
 * partial refund after delivery shows on the order, `amount: null` is 422).
 */
import { TestCluster } from "../support/harness";

jest.setTimeout(300_000);

const cluster = new TestCluster(
	[
		{ name: "gateway", services: ["api"] },
		{ name: "identity", services: ["auth", "customers", "users"] },
		{ name: "content", services: ["catalog", "reviews"] },
		{ name: "commerce-a", services: ["cart", "orders", "payments"] },
		{ name: "commerce-b", services: ["cart", "orders", "payments"] },
		{ name: "inventory-a", services: ["warehouse", "fulfillment", "shipping"] },
		{ name: "inventory-b", services: ["warehouse", "fulfillment", "shipping"] },
	],
	{
		AUTH_RATE_LIMIT_MAX: "10000",
		RATE_LIMIT_MAX: "1000000",
		CHECKOUT_WAIT_MS: "6000",
		REQUEST_TIMEOUT_MS: "4000",
		// A paused node's unacknowledged messages come back soon; a handler that must wait retries often enough to outlast a pause.
		EVENTS_ACK_WAIT_MS: "3000",
		EVENTS_RETRY_BASE_MS: "200",
		EVENTS_RETRY_MAX_MS: "2000",
		EVENTS_MAX_ATTEMPTS: "40",
		PAYMENTS_RECONCILE_MS: "0",
	},
);

const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
let admin: string;
let buyer: { accessToken: string };
let product: { id: string; sku: string; price: { amount: number } };

beforeAll(async () => {
	await cluster.start();
	admin = await cluster.waitForShop();
	buyer = await cluster.registerCustomer("events");
	product = (await cluster.http("GET", "/api/v1/products?category=headphones&pageSize=1")).body.items[0];
	const stock = (await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin })).body;
	const r = await cluster.http("PUT", `/api/v1/admin/inventory/${product.sku}`, { token: admin, body: { warehouseId: stock.warehouses[0].warehouseId, onHand: 1000 } });
	expect(r.status).toBe(200);
});

afterAll(() => cluster.stop());

async function confirmedOrder(): Promise<any> {
	const res = await cluster.http("POST", "/api/v1/orders", { token: buyer.accessToken, body: { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: product.id, quantity: 1 }] }, headers: { "idempotency-key": `k-${Math.random()}` } });
	expect([201, 202]).toContain(res.status);
	let o: any;
	await cluster.waitUntil(async () => (o = (await cluster.http("GET", `/api/v1/orders/${res.body.id}`, { token: buyer.accessToken })).body).status !== "PENDING", 60_000, "order settles");
	expect(o.status).toBe("CONFIRMED");
	return o;
}

const TARGET: Record<string, string> = { pick: "PICKED", pack: "PACKED", ship: "SHIPPED", deliver: "DELIVERED" };
const RANK = ["PENDING", "PICKED", "PACKED", "SHIPPED", "DELIVERED"];

/** An operator's move, tried again while a paused node makes it time out, until the parcel has reached its target. */
async function operate(orderId: string, fulfillmentId: string, verb: string): Promise<void> {
	for (let attempt = 0; attempt < 40; attempt++) {
		const r = await cluster.http("POST", `/api/v1/admin/fulfillments/${fulfillmentId}/${verb}`, { token: admin }).catch(() => ({ status: 0, body: null }));
		if (r.status === 200) return;
		const list = await cluster.http("GET", `/api/v1/admin/fulfillments?orderId=${orderId}`, { token: admin }).catch(() => null);
		const f = list?.status === 200 ? list.body.items.find((x: any) => x.id === fulfillmentId) : undefined;
		if (f && RANK.indexOf(f.status) >= RANK.indexOf(TARGET[verb])) return;
		await sleep(250);
	}
	throw new Error(`${verb} of ${fulfillmentId} never went through`);
}

describe("events in any order", () => {
	it("ends every delivered order DELIVERED, none SHIPPED, while operators move parcels 100 ms apart and nodes are paused", async () => {
		const orders: any[] = [];
		for (let i = 0; i < 12; i++) orders.push(await confirmedOrder());

		const pauses = (async () => {
			await sleep(300);
			cluster.signal("commerce-a", "SIGSTOP");
			await sleep(3000);
			cluster.signal("commerce-a", "SIGCONT");
			await sleep(500);
			cluster.signal("inventory-b", "SIGSTOP");
			await sleep(3000);
			cluster.signal("inventory-b", "SIGCONT");
		})();
		await Promise.all(
			orders.map(async (o, i) => {
				await sleep(i * 100);
				for (const f of o.fulfillments) {
					await operate(o.id, f.id, "pick");
					await operate(o.id, f.id, "pack");
					await operate(o.id, f.id, "ship");
					await sleep(100);
					await operate(o.id, f.id, "deliver");
				}
			}),
		);
		await pauses;

		const statusOf = async (id: string) => (await cluster.http("GET", `/api/v1/orders/${id}`, { token: buyer.accessToken })).body;
		await cluster.waitUntil(async () => (await Promise.all(orders.map(o => statusOf(o.id)))).every(o => o.status === "DELIVERED"), 90_000, "every order DELIVERED");
		for (const o of orders) {
			const after = await statusOf(o.id);
			expect(after.history.map((h: any) => h.status)).toEqual(["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED"]);
			expect(after.fulfillments.every((f: any) => f.status === "DELIVERED")).toBe(true);
		}
		expect((await cluster.http("GET", "/api/v1/admin/orders?status=SHIPPED&pageSize=100", { token: admin })).body.total).toBe(0);
	});

	it("reads SHIPPED when ship answers, DELIVERED when the last deliver answers, and takes the buyer's review at once", async () => {
		const o = await confirmedOrder();
		expect(o.payment).toEqual({ status: "CAPTURED" });
		for (const f of o.fulfillments) for (const verb of ["pick", "pack"]) expect((await cluster.http("POST", `/api/v1/admin/fulfillments/${f.id}/${verb}`, { token: admin })).status).toBe(200);
		expect((await cluster.http("POST", `/api/v1/admin/fulfillments/${o.fulfillments[0].id}/ship`, { token: admin })).status).toBe(200);
		expect((await cluster.http("GET", `/api/v1/orders/${o.id}`, { token: buyer.accessToken })).body.status).toBe("SHIPPED");
		for (const f of o.fulfillments.slice(1)) expect((await cluster.http("POST", `/api/v1/admin/fulfillments/${f.id}/ship`, { token: admin })).status).toBe(200);
		for (const f of o.fulfillments) expect((await cluster.http("POST", `/api/v1/admin/fulfillments/${f.id}/deliver`, { token: admin })).status).toBe(200);
		expect((await cluster.http("GET", `/api/v1/orders/${o.id}`, { token: buyer.accessToken })).body.status).toBe("DELIVERED");
		const review = await cluster.http("POST", `/api/v1/products/${product.id}/reviews`, { token: buyer.accessToken, body: { rating: 5, title: "Good", body: "Arrived fine" } });
		expect([201, 409]).toContain(review.status);
		if (review.status === 409) expect(review.body.type).toBe("ALREADY_REVIEWED");
	});

	it("lists orders and answers checkouts with one shape: no null payment, no empty fulfillments on a CONFIRMED order", async () => {
		const list = (await cluster.http("GET", "/api/v1/orders?pageSize=100", { token: buyer.accessToken })).body;
		for (const o of list.items) {
			expect(o.payment).not.toBeNull();
			if (o.status === "CONFIRMED" && "fulfillments" in o) expect(o.fulfillments.length).toBeGreaterThan(0);
			expect(o).toHaveProperty("refundedTotal");
		}
	});
});

describe("refunds against the order's state", () => {
	const paymentOf = async (orderId: string) => (await cluster.http("GET", `/api/v1/admin/payments?orderId=${orderId}`, { token: admin })).body.items[0];
	const stock = async () => (await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin })).body;

	it("cancels an order refunded in full before shipment, with its stock back, and refuses to ship it (409)", async () => {
		const before = await stock();
		const o = await confirmedOrder();
		for (const verb of ["pick", "pack"]) expect((await cluster.http("POST", `/api/v1/admin/fulfillments/${o.fulfillments[0].id}/${verb}`, { token: admin })).status).toBe(200);
		const pay = await paymentOf(o.id);
		const refund = await cluster.http("POST", `/api/v1/admin/payments/${pay.id}/refund`, { token: admin, body: {} });
		expect(refund).toMatchObject({ status: 200, body: { status: "REFUNDED", captured: pay.amount, refunded: pay.amount } });
		const after = (await cluster.http("GET", `/api/v1/orders/${o.id}`, { token: buyer.accessToken })).body;
		expect(after).toMatchObject({ status: "CANCELLED", payment: { status: "REFUNDED" } });
		expect(after.fulfillments.every((f: any) => f.status === "CANCELLED")).toBe(true);
		expect(await stock()).toEqual(before);
		expect((await cluster.http("POST", `/api/v1/admin/fulfillments/${o.fulfillments[0].id}/ship`, { token: admin })).status).toBe(409);
	});

	it("records a partial refund after delivery on the order, which stays DELIVERED; refuses amount null with 422", async () => {
		const o = await confirmedOrder();
		for (const f of o.fulfillments) for (const verb of ["pick", "pack", "ship", "deliver"]) expect((await cluster.http("POST", `/api/v1/admin/fulfillments/${f.id}/${verb}`, { token: admin })).status).toBe(200);
		const pay = await paymentOf(o.id);
		expect(await cluster.http("POST", `/api/v1/admin/payments/${pay.id}/refund`, { token: admin, body: { amount: null } })).toMatchObject({ status: 422, body: { code: 422, type: "VALIDATION_ERROR" } });
		expect(await cluster.http("POST", `/api/v1/admin/payments/${pay.id}/refund`, { token: admin, body: { amount: 300 } })).toMatchObject({ status: 200, body: { status: "PARTIALLY_REFUNDED", refunded: { amount: 300, currency: "USD" } } });
		const after = (await cluster.http("GET", `/api/v1/orders/${o.id}`, { token: buyer.accessToken })).body;
		expect(after).toMatchObject({ status: "DELIVERED", payment: { status: "PARTIALLY_REFUNDED" }, refunds: [{ amount: { amount: 300, currency: "USD" }, at: expect.any(String) }], refundedTotal: { amount: 300, currency: "USD" } });
		// DOMAIN.md invariant 3: captured − refunded = total − refundedTotal.
		const p = await paymentOf(o.id);
		expect(p.captured.amount - p.refunded.amount).toBe(after.total.amount - after.refundedTotal.amount);
	});
});
