/**
 * With the payments service down, checkouts fail fast as PAYMENT_UNAVAILABLE and compensate,
 * instead of hanging or parking the saga: a call that never reached a node took no effect.
 */
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

jest.setTimeout(60_000);

let broker: ServiceBroker;

beforeAll(async () => {
	useTestEnv({ SEED_DEMO: "true" });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(["catalog", "cart", "orders", "warehouse", "fulfillment", "shipping"], { logger: false, namespace: `nopay-${Math.random()}` });
	await broker.start();
});

afterAll(() => broker?.stop());

it("rejects the order quickly and leaves no stock held", async () => {
	const { DEMO_PRODUCTS } = require("../../../lib/catalog/demo-data") as typeof import("../../../lib/catalog/demo-data");
	const product = DEMO_PRODUCTS[1];
	const before = await broker.call("warehouse.availability", { sku: product.sku });
	const t0 = Date.now();
	const order: any = await broker.call(
		"orders.create",
		{ shippingAddress: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: product.id, quantity: 1 }] },
		{ meta: { user: { id: "cust-9", typ: "customer", roles: [] }, idempotencyKey: "nopay-1" } },
	);
	expect(Date.now() - t0).toBeLessThan(2000);
	expect(order).toMatchObject({ status: "REJECTED", failureReason: "PAYMENT_UNAVAILABLE" });
	expect(await broker.call("warehouse.availability", { sku: product.sku })).toEqual(before);
	expect(await broker.call("orders.sagas", { status: "STUCK" }, { meta: { user: { id: "system", typ: "system", roles: [] } } })).toEqual([]);
});
