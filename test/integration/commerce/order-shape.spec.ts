/**
 * One order shape in every view (API.md, GET /orders/:id: "the same shape in lists, in the
 * checkout answer and here"): `payment: { status }` and `fulfillments` in the checkout answer (and
 * its replay), the customer's list and the admin list, filled by one batched read per page
 * (`payments.byOrders`, `fulfillment.byOrders`); a service that cannot answer leaves its part out,
 * never null.
 */
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

jest.setTimeout(90_000);

let broker: ServiceBroker;
const customerId = "cust-shape";
const customer = (idempotencyKey?: string) => ({ meta: { user: { id: customerId, typ: "customer", roles: [] }, ...(idempotencyKey ? { idempotencyKey } : {}) } });
const admin = { meta: { user: { id: "adm-shape", typ: "admin", roles: ["support"] } } };
const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
let product: { id: string; sku: string };

beforeAll(async () => {
	useTestEnv({ SEED_DEMO: "true", CHECKOUT_WAIT_MS: "8000", EVENTS_POLL_MS: "100", PAYMENTS_RECONCILE_MS: "0" });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(["catalog", "customers", "cart", "orders", "payments", "warehouse", "fulfillment", "shipping"], { logger: false, namespace: `oshape-${Math.random().toString(36).slice(2)}` });
	await broker.start();
	await broker.call("customers.create", { id: customerId, email: "shape@example.com", firstName: "Sha", lastName: "Pe" });
	const { DEMO_PRODUCTS } = require("../../../lib/catalog/demo-data") as typeof import("../../../lib/catalog/demo-data");
	product = DEMO_PRODUCTS[3];
});

afterAll(() => broker?.stop());

const place = (key: string, paymentToken = "tok_visa", quantity = 2): Promise<any> =>
	broker.call("orders.create", { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken, items: [{ productId: product.id, quantity }] }, customer(key));
const getOrder = (id: string): Promise<any> => broker.call("orders.get", { id }, customer());
const parts = (o: any) => ({ payment: o.payment, fulfillments: o.fulfillments });

const placed: any[] = [];

it("answers a CONFIRMED checkout, and its replay, with the payment CAPTURED and the parcels created", async () => {
	const o = await place("shape-1");
	placed.push(o);
	expect(o.status).toBe("CONFIRMED");
	expect(o.payment).toEqual({ status: "CAPTURED" });
	expect(o.fulfillments.length).toBeGreaterThanOrEqual(1);
	for (const f of o.fulfillments) expect(f).toMatchObject({ id: expect.any(String), status: "PENDING", trackingNumber: null });
	// The same parts GET /orders/:id reads from payments and fulfillment.
	expect(parts(o)).toEqual(parts(await getOrder(o.id)));
	expect(await place("shape-1")).toEqual(o);
});

it.each([
	["tok_declined", "PAYMENT_DECLINED"],
	["tok_capture_fails", "PAYMENT_DECLINED"],
])("answers a REJECTED checkout (%s) with what payments and fulfillment hold", async (token, reason) => {
	const o = await place(`shape-${token}`, token);
	placed.push(o);
	expect(o).toMatchObject({ status: "REJECTED", failureReason: reason });
	expect(o.payment).toEqual({ status: token === "tok_declined" ? "FAILED" : "VOIDED" });
	expect(o.fulfillments.every((f: any) => f.status === "CANCELLED")).toBe(true);
	expect(parts(o)).toEqual(parts(await getOrder(o.id)));
});

it("fills payment and fulfillments of every order in the customer's list and the admin list", async () => {
	const mine: any = await broker.call("orders.list", { pageSize: 100 }, customer());
	expect(mine.items).toHaveLength(placed.length);
	for (const o of placed) {
		const item = mine.items.find((i: any) => i.id === o.id);
		expect(parts(item)).toEqual(parts(await getOrder(o.id)));
	}
	const confirmed = mine.items.find((i: any) => i.id === placed[0].id);
	expect(confirmed.payment).toEqual({ status: "CAPTURED" });
	expect(confirmed.fulfillments.map((f: any) => f.id).sort()).toEqual(placed[0].fulfillments.map((f: any) => f.id).sort());
	const all: any = await broker.call("orders.adminList", { status: "CONFIRMED", pageSize: 100 }, admin);
	const inAdmin = all.items.find((i: any) => i.id === placed[0].id);
	expect(parts(inAdmin)).toEqual(parts(confirmed));
});

it("answers byOrders for a page of orders at once, [] for an order without any, and refuses more than 100 ids", async () => {
	const ids = [placed[0].id, "no-such-order"];
	const pays: any = await broker.call("payments.byOrders", { orderIds: ids });
	expect(pays).toEqual({ [placed[0].id]: [expect.objectContaining({ status: "CAPTURED" })], "no-such-order": [] });
	const fuls: any = await broker.call("fulfillment.byOrders", { orderIds: ids });
	expect(fuls[placed[0].id].map((f: any) => f.id).sort()).toEqual(placed[0].fulfillments.map((f: any) => f.id).sort());
	expect(fuls["no-such-order"]).toEqual([]);
	const tooMany = Array.from({ length: 101 }, (_, i) => `o-${i}`);
	await expect(broker.call("payments.byOrders", { orderIds: tooMany })).rejects.toMatchObject({ code: 422 });
	await expect(broker.call("fulfillment.byOrders", { orderIds: tooMany })).rejects.toMatchObject({ code: 422 });
});

it("answers a checkout still PENDING with what payments and fulfillment hold so far", async () => {
	const { resetConfig } = require("../../../config") as typeof import("../../../config");
	process.env.CHECKOUT_WAIT_MS = "300";
	resetConfig();
	try {
		// tok_slow: the provider answers the authorisation after 2 s, so the request stops waiting first.
		const o = await place("shape-slow", "tok_slow", 1);
		placed.push(o);
		expect(o.status).toBe("PENDING");
		expect(["NONE", "AUTHORIZED"]).toContain(o.payment.status);
		expect(Array.isArray(o.fulfillments)).toBe(true);
	} finally {
		process.env.CHECKOUT_WAIT_MS = "8000";
		resetConfig();
	}
	const deadline = Date.now() + 30_000;
	let now = await getOrder(placed[placed.length - 1].id);
	while (now.status === "PENDING" && Date.now() < deadline) {
		await new Promise(r => setTimeout(r, 200));
		now = await getOrder(now.id);
	}
	expect(now).toMatchObject({ status: "CONFIRMED", payment: { status: "CAPTURED" } });
});

it("still lists the orders, with payment left out (never null), while payments cannot answer", async () => {
	await broker.destroyService(broker.getLocalService("payments")!);
	const mine: any = await broker.call("orders.list", { pageSize: 100 }, customer());
	expect(mine.items).toHaveLength(placed.length);
	for (const item of mine.items) {
		expect(item).not.toHaveProperty("payment");
		expect(Array.isArray(item.fulfillments)).toBe(true);
	}
	const all: any = await broker.call("orders.adminList", { pageSize: 100 }, admin);
	for (const item of all.items) expect(item).not.toHaveProperty("payment");
});
