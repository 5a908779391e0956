/**
 * A cancel whose saga has not finished when the request's wait ends answers 409
 * CANCELLATION_IN_PROGRESS, never 200 with the order still CONFIRMED (API.md: a cancel's 200
 * carries the order CANCELLED). Adversary finding: with payments hung on one commerce replica,
 * 6 of 71 cancels answered 200 CONFIRMED after the 8 s wait. Here payments.refund hangs
 * (lib/faults.ts `hang:`) in an embedded broker; once it is released the saga finishes by itself
 * and the repeated cancel answers 200 CANCELLED, refunded once.
 */
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

jest.setTimeout(60_000);

const FAULTS = join(mkdtempSync(join(tmpdir(), "mc-cancel-")), "faults");
writeFileSync(FAULTS, "");
let broker: ServiceBroker;
const customer = (key: string) => ({ meta: { user: { id: "cust-cancel", typ: "customer", roles: [] }, idempotencyKey: key } });
const system = { meta: { user: { id: "system", typ: "system", roles: [] } } };

beforeAll(async () => {
	// The cancel waits 2 × CHECKOUT_WAIT_MS (1.2 s here) for its saga.
	useTestEnv({ SEED_DEMO: "true", CHECKOUT_WAIT_MS: "600", TEST_FAULTS_FILE: FAULTS });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(["catalog", "cart", "orders", "payments", "warehouse", "fulfillment", "shipping"], { logger: false, namespace: `cancel-${Math.random()}` });
	await broker.start();
});

afterAll(async () => {
	writeFileSync(FAULTS, "");
	await broker?.stop();
});

/** orders.cancel's answer, or its error's code and type. */
async function cancel(id: string): Promise<{ status?: string; error?: [number, string] }> {
	try {
		return { status: ((await broker.call("orders.cancel", { id }, customer("unused"))) as any).status };
	} catch (err: any) {
		return { error: [err.code, err.type] };
	}
}

async function orderStatus(id: string): Promise<string> {
	return ((await broker.call("orders.get", { id }, customer("unused"))) as any).status;
}

it("answers 409 CANCELLATION_IN_PROGRESS while the refund hangs, then 200 CANCELLED once the saga finished by itself", async () => {
	const { DEMO_PRODUCTS } = require("../../../lib/catalog/demo-data") as typeof import("../../../lib/catalog/demo-data");
	const placed: any = await broker.call(
		"orders.create",
		{ shippingAddress: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: DEMO_PRODUCTS[0].id, quantity: 1 }] },
		customer("cancel-in-progress-1"),
	);
	const deadline = Date.now() + 20_000;
	while ((await orderStatus(placed.id)) === "PENDING" && Date.now() < deadline) await new Promise(r => setTimeout(r, 100));
	expect(await orderStatus(placed.id)).toBe("CONFIRMED");

	writeFileSync(FAULTS, "hang:payments.refund");
	expect(await cancel(placed.id)).toEqual({ error: [409, "CANCELLATION_IN_PROGRESS"] });
	expect(await orderStatus(placed.id)).toBe("CONFIRMED");
	// A repeat while it still runs: the same answer.
	expect(await cancel(placed.id)).toEqual({ error: [409, "CANCELLATION_IN_PROGRESS"] });

	writeFileSync(FAULTS, "");
	const end = Date.now() + 30_000;
	while ((await orderStatus(placed.id)) !== "CANCELLED" && Date.now() < end) await new Promise(r => setTimeout(r, 200));
	expect(await cancel(placed.id)).toEqual({ status: "CANCELLED" });
	const payments: any[] = await broker.call("payments.byOrder", { orderId: placed.id }, system);
	expect(payments.map(p => [p.status, p.captured?.amount ?? p.captured, p.refunded?.amount ?? p.refunded])).toEqual([["REFUNDED", placed.total.amount, placed.total.amount]]);
});
