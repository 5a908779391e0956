/**
 * The real services together in one process: a customer's cart is checked out to a saved
 * address, the cart empties on confirmation, and operators pick, pack, ship and deliver every
 * parcel — the order follows to SHIPPED and DELIVERED and every parcel can be tracked.
 */
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";
import { waitFor } from "../events/helpers";

jest.setTimeout(60_000);

let broker: ServiceBroker;
const customerId = "cust-flow";
const customer = (idempotencyKey?: string) => ({ meta: { user: { id: customerId, typ: "customer", roles: [] }, ...(idempotencyKey ? { idempotencyKey } : {}) } });
const ops = { meta: { user: { id: "adm-ops", typ: "admin", roles: ["ops"] } } };

beforeAll(async () => {
	useTestEnv({ SEED_DEMO: "true", CHECKOUT_WAIT_MS: "8000", EVENTS_POLL_MS: "100" });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(["catalog", "customers", "cart", "orders", "payments", "warehouse", "fulfillment", "shipping"], { logger: false, namespace: `flow-${Math.random().toString(36).slice(2)}` });
	await broker.start();
	await broker.call("customers.create", { id: customerId, email: "flow@example.com", firstName: "Flo", lastName: "W" });
});

afterAll(() => broker?.stop());

it("checks out the cart to a saved address, empties the cart, and follows every parcel to delivery", async () => {
	const { DEMO_PRODUCTS } = require("../../../lib/catalog/demo-data") as typeof import("../../../lib/catalog/demo-data");
	const address: any = await broker.call("customers.addAddress", { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, customer());
	const [first, second] = DEMO_PRODUCTS;
	await broker.call("cart.addItem", { productId: first.id, quantity: 1 }, customer());
	const cart: any = await broker.call("cart.addItem", { productId: second.id, quantity: 2 }, customer());
	expect(cart.itemCount).toBe(3);

	const quoted: any = await broker.call("shipping.rates", { address: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" } }, customer());
	const standard = quoted.items.find((r: any) => r.method === "standard");

	const placed: any = await broker.call("orders.create", { addressId: address.id, shippingMethod: "standard", paymentToken: "tok_visa" }, customer("flow-1"));
	await waitFor(async () => ((await broker.call("orders.get", { id: placed.id }, customer())) as any).status !== "PENDING");
	const order: any = await broker.call("orders.get", { id: placed.id }, customer());
	expect(order).toMatchObject({ status: "CONFIRMED", shipping: standard.price, subtotal: cart.subtotal });
	await waitFor(async () => ((await broker.call("cart.get", {}, customer())) as any).itemCount === 0);

	expect(order.fulfillments.length).toBeGreaterThanOrEqual(1);
	expect(order.fulfillments.every((f: any) => f.status === "PENDING")).toBe(true);
	const tracking: string[] = [];
	for (const f of order.fulfillments) {
		for (const verb of ["pick", "pack"]) await broker.call(`fulfillment.${verb}`, { id: f.id }, ops);
		tracking.push(((await broker.call("fulfillment.ship", { id: f.id }, ops)) as any).trackingNumber);
	}
	await waitFor(async () => ((await broker.call("orders.get", { id: order.id }, customer())) as any).status === "SHIPPED");
	for (const f of order.fulfillments) await broker.call("fulfillment.deliver", { id: f.id }, ops);
	await waitFor(async () => ((await broker.call("orders.get", { id: order.id }, customer())) as any).status === "DELIVERED");

	const delivered: any = await broker.call("orders.get", { id: order.id }, customer());
	expect(delivered.history.map((h: any) => h.status)).toEqual(["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED"]);
	expect(delivered.fulfillments.map((f: any) => [f.status, f.trackingNumber]).sort()).toEqual(tracking.map(t => ["DELIVERED", t]).sort());
	for (const t of tracking) {
		await waitFor(async () => ((await broker.call("shipping.track", { trackingNumber: t })) as any).status === "DELIVERED");
	}
	await expect(broker.call("orders.cancel", { id: order.id }, customer())).rejects.toMatchObject({ code: 409, type: "NOT_CANCELLABLE" });
});
