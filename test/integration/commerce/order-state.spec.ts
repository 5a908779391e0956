/**
 * The order after checkout, with the real services in one process (issue 8): read-your-writes on
 * ship and deliver (the buyer may review at once), operators' refunds against the order's state,
 * a delivery reported before its shipment, and the payments reconciler repairing what was planted.
 */
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

jest.setTimeout(90_000);

let broker: ServiceBroker;
const customerId = "cust-state";
const customer = (idempotencyKey?: string) => ({ meta: { user: { id: customerId, typ: "customer", roles: [] }, ...(idempotencyKey ? { idempotencyKey } : {}) } });
const ops = { meta: { user: { id: "adm-ops", typ: "admin", roles: ["ops"] } } };
const support = { meta: { user: { id: "adm-support", typ: "admin", roles: ["support"] } } };
const system = { meta: { user: { id: "system", typ: "system", roles: [] } } };
const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
let product: { id: string; sku: string };

beforeAll(async () => {
	useTestEnv({ SEED_DEMO: "true", CHECKOUT_WAIT_MS: "8000", EVENTS_POLL_MS: "100", PAYMENTS_RECONCILE_MS: "0" });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(["catalog", "customers", "cart", "orders", "payments", "warehouse", "fulfillment", "shipping", "reviews"], { logger: false, namespace: `ostate-${Math.random().toString(36).slice(2)}` });
	await broker.start();
	await broker.call("customers.create", { id: customerId, email: "state@example.com", firstName: "Sta", lastName: "Te" });
	const { DEMO_PRODUCTS } = require("../../../lib/catalog/demo-data") as typeof import("../../../lib/catalog/demo-data");
	product = DEMO_PRODUCTS[2];
});

afterAll(() => broker?.stop());

async function confirmedOrder(key: string): Promise<any> {
	const placed: any = await broker.call("orders.create", { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: product.id, quantity: 1 }] }, customer(key));
	expect(placed.status).toBe("CONFIRMED");
	// The checkout answer has the shape of GET /orders/:id (API.md): what the saga knew, no extra call.
	const got: any = await broker.call("orders.get", { id: placed.id }, customer());
	expect(placed.payment).toEqual({ status: "CAPTURED" });
	expect(placed.fulfillments).toEqual(got.fulfillments);
	return got;
}
const orderOf = (id: string): Promise<any> => broker.call("orders.get", { id }, customer());
const stockOf = (): Promise<any> => broker.call("warehouse.stock", { sku: product.sku }, ops);
const paymentOf = async (orderId: string): Promise<any> => ((await broker.call("payments.list", { orderId }, support)) as any).items[0];

it("reads SHIPPED as soon as ship answers, DELIVERED as soon as the last deliver answers, and lets the buyer review at once", async () => {
	const o = await confirmedOrder("rw-1");
	expect(o.payment).toEqual({ status: "CAPTURED" });
	for (const f of o.fulfillments) for (const verb of ["pick", "pack"]) await broker.call(`fulfillment.${verb}`, { id: f.id }, ops);
	await broker.call("fulfillment.ship", { id: o.fulfillments[0].id }, ops);
	expect((await orderOf(o.id)).status).toBe("SHIPPED");
	for (const f of o.fulfillments.slice(1)) await broker.call("fulfillment.ship", { id: f.id }, ops);
	for (const f of o.fulfillments) await broker.call("fulfillment.deliver", { id: f.id }, ops);
	const delivered = await orderOf(o.id);
	expect(delivered).toMatchObject({ status: "DELIVERED", refunds: [], refundedTotal: { amount: 0, currency: "USD" } });
	expect(delivered.history.map((h: any) => h.status)).toEqual(["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED"]);
	const review: any = await broker.call("reviews.submit", { id: product.id, rating: 5, title: "Great", body: "Works well" }, customer());
	expect(review).toMatchObject({ id: expect.any(String) });
});

it("moves a CONFIRMED order to DELIVERED, with the shipment it skipped, when the delivery is reported first", async () => {
	const o = await confirmedOrder("rw-2");
	expect(await broker.call("orders.markDelivered", { orderId: o.id, orderComplete: true })).toEqual({ orderId: o.id, status: "DELIVERED" });
	// The shipment reported late, and the delivery again, change nothing.
	expect(await broker.call("orders.markShipped", { orderId: o.id })).toEqual({ orderId: o.id, status: "DELIVERED" });
	expect(await broker.call("orders.markDelivered", { orderId: o.id, orderComplete: true })).toEqual({ orderId: o.id, status: "DELIVERED" });
	expect((await orderOf(o.id)).history.map((h: any) => h.status)).toEqual(["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED"]);
});

it("cancels an order refunded in full before shipment (fulfillments cancelled, stock back) and refuses to ship it", async () => {
	const before = await stockOf();
	const o = await confirmedOrder("rf-1");
	for (const verb of ["pick", "pack"]) await broker.call(`fulfillment.${verb}`, { id: o.fulfillments[0].id }, ops);
	const pay = await paymentOf(o.id);
	expect(await broker.call("payments.adminRefund", { id: pay.id }, support)).toMatchObject({ status: "REFUNDED", captured: pay.amount, refunded: pay.amount });
	const after = await orderOf(o.id);
	expect(after).toMatchObject({ status: "CANCELLED", payment: { status: "REFUNDED" }, refundedTotal: { amount: 0, currency: "USD" } });
	expect(after.fulfillments.every((f: any) => f.status === "CANCELLED")).toBe(true);
	expect(await stockOf()).toEqual(before);
	await expect(broker.call("fulfillment.ship", { id: o.fulfillments[0].id }, ops)).rejects.toMatchObject({ code: 409 });
});

it("records a partial refund after delivery on the order, which stays DELIVERED; refuses amount null with 422", async () => {
	const o = await confirmedOrder("rf-2");
	for (const f of o.fulfillments) for (const verb of ["pick", "pack", "ship", "deliver"]) await broker.call(`fulfillment.${verb}`, { id: f.id }, ops);
	const pay = await paymentOf(o.id);
	await expect(broker.call("payments.adminRefund", { id: pay.id, amount: null }, support)).rejects.toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
	expect(await broker.call("payments.adminRefund", { id: pay.id, amount: 500 }, support)).toMatchObject({ status: "PARTIALLY_REFUNDED", refunded: { amount: 500, currency: "USD" } });
	const after = await orderOf(o.id);
	expect(after).toMatchObject({ status: "DELIVERED", payment: { status: "PARTIALLY_REFUNDED" }, refunds: [{ amount: { amount: 500, currency: "USD" }, at: expect.any(String) }], refundedTotal: { amount: 500, currency: "USD" } });
	// The refund's event arrives too: recorded once.
	await new Promise(r => setTimeout(r, 500));
	expect((await orderOf(o.id)).refunds).toHaveLength(1);
});

it("voids an authorisation planted open on a REJECTED order and refunds a capture on a CANCELLED one, once, and lists the repairs", async () => {
	const { promRegistry } = require("../../../lib/metrics") as typeof import("../../../lib/metrics");
	const repairsOf = async () => (await promRegistry.getSingleMetric("payment_reconciler_repairs_total")!.get()).values.reduce((n, v) => n + v.value, 0);
	const orders: any = broker.getLocalService("orders");
	const now = new Date();
	const row = (id: string, status: string) => ({ id, number: `MC-T${id.slice(-6)}`, customer_id: customerId, status, items: [], subtotal: 700, shipping: 0, tax: 0, total: 700, currency: "USD", shipping_address: ADDRESS, shipping_method: "standard", history: [{ status, at: now.toISOString() }], created_at: now, updated_at: now });
	await orders.models.Order.create(row("planted-rejected-000001", "REJECTED"));
	await orders.models.Order.create(row("planted-cancelled-00001", "CANCELLED"));
	await broker.call("payments.authorize", { orderId: "planted-rejected-000001", amount: { amount: 700, currency: "USD" }, paymentToken: "tok_visa", idempotencyKey: "plant-1" });
	await broker.call("payments.authorize", { orderId: "planted-cancelled-00001", amount: { amount: 700, currency: "USD" }, paymentToken: "tok_visa", idempotencyKey: "plant-2" });
	await broker.call("payments.capture", { orderId: "planted-cancelled-00001", idempotencyKey: "plant-2c" });
	const counted = await repairsOf();

	const first: any = await broker.call("payments.reconcile", { graceMs: 0 }, system);
	expect(first.repaired.map((r: any) => [r.action, r.orderId]).sort()).toEqual([["refund", "planted-cancelled-00001"], ["void", "planted-rejected-000001"]]);
	expect(await paymentOf("planted-rejected-000001")).toMatchObject({ status: "VOIDED" });
	expect(await paymentOf("planted-cancelled-00001")).toMatchObject({ status: "REFUNDED", refunded: { amount: 700, currency: "USD" } });
	expect(await repairsOf()).toBe(counted + 2);

	expect(await broker.call("payments.reconcile", { graceMs: 0 }, system)).toEqual({ repaired: [] });
	const listed: any[] = await broker.call("payments.reconciliations", {}, system);
	expect(listed.filter(r => r.orderId.startsWith("planted-")).map(r => r.action).sort()).toEqual(["refund", "void"]);
	// The REPL command prints them.
	const { paymentCommands } = require("../../../lib/repl/payment-commands") as typeof import("../../../lib/repl/payment-commands");
	const log = jest.spyOn(console, "log").mockImplementation(() => undefined);
	await paymentCommands.find(c => c.command === "reconciliations")!.action(broker, { options: {} });
	expect(log.mock.calls.flat().join("\n")).toContain("planted-rejected-000001");
	log.mockRestore();
});
