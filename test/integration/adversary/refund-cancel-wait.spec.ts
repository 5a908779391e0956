/**
 * ADVERSARY (kept; passes since the 409 moved into the cancel action, orders.service.ts). Found against: the cancel's new 409 CANCELLATION_IN_PROGRESS (orders.service.ts cancelConfirmed,
 * f8bc058) and an operator's full refund (POST /admin/payments/:id/refund, API.md: → 200).
 *
 * applyOperatorRefund (order-state.mixin.ts) calls cancelConfirmed(wait) and, on
 * CANCELLATION_IN_PROGRESS, waits AGAIN in settledStatus (2 × CHECKOUT_WAIT_MS). Before f8bc058 a
 * cancellation still running at the end of the first wait returned the row (CONFIRMED); now it
 * throws, so a full refund whose cancellation is slow waits 4 × CHECKOUT_WAIT_MS — with the
 * defaults 16 s, past the 10 s the gateway's call to payments.adminRefund has (REQUEST_TIMEOUT_MS):
 * the operator gets a 504 for a refund that was made. Scaled down here with the same ratios
 * (CHECKOUT_WAIT_MS 1500, REQUEST_TIMEOUT_MS 5000; defaults 4000 / 10000).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

jest.setTimeout(90_000);

const FAULTS = join(mkdtempSync(join(tmpdir(), "rcw3-")), "faults");
writeFileSync(FAULTS, "");
let broker: ServiceBroker;
const customer = (key?: string) => ({ meta: { user: { id: "cust-rcw3", typ: "customer", roles: [] }, ...(key ? { idempotencyKey: key } : {}) } });
const support = { meta: { user: { id: "adm-support", typ: "admin", roles: ["support"] } } };
const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };

beforeAll(async () => {
	useTestEnv({ SEED_DEMO: "true", CHECKOUT_WAIT_MS: "1500", REQUEST_TIMEOUT_MS: "5000", PAYMENTS_RECONCILE_MS: "0", TEST_FAULTS_FILE: FAULTS });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(["catalog", "customers", "cart", "orders", "payments", "warehouse", "fulfillment", "shipping"], { logger: false, namespace: `rcw3-${Math.random().toString(36).slice(2)}` });
	await broker.start();
});

afterAll(async () => {
	writeFileSync(FAULTS, "");
	await new Promise(r => setTimeout(r, 500));
	await broker?.stop();
});

it("an operator's full refund answers 200 within the gateway's timeout while the order's cancellation is still running", async () => {
	const { DEMO_PRODUCTS } = require("../../../lib/catalog/demo-data") as typeof import("../../../lib/catalog/demo-data");
	const placed: any = await broker.call("orders.create", { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: DEMO_PRODUCTS[1].id, quantity: 1 }] }, customer("rcw3-1"));
	const deadline = Date.now() + 20_000;
	let o: any = placed;
	while (o.status === "PENDING" && Date.now() < deadline) {
		await new Promise(r => setTimeout(r, 100));
		o = await broker.call("orders.get", { id: placed.id }, customer());
	}
	expect(o.status).toBe("CONFIRMED");
	const pay: any = ((await broker.call("payments.list", { orderId: placed.id }, support)) as any).items[0];

	// The cancellation's last step (stock release) hangs: the cancellation runs past every wait.
	// The refund's event is held back (its relay fails to publish, and retries): the synchronous
	// orders.refundApplied call starts the cancellation, as it does whenever it beats the event.
	writeFileSync(FAULTS, "hang:warehouse.release,fail:outbox.relay.beforePublish");
	const started = Date.now();
	const answer = await broker.call("payments.adminRefund", { id: pay.id }, support).then(
		(p: any) => ({ ok: p.status }),
		(err: any) => ({ error: [err.code, err.type] }),
	);
	const ms = Date.now() - started;
	const after: any = ((await broker.call("payments.list", { orderId: placed.id }, support)) as any).items[0];
	// The refund was made either way.
	expect(after.status).toBe("REFUNDED");
	// Before f8bc058: ~2 × CHECKOUT_WAIT_MS (3.2 s here). Reaching the 5 s request timeout means the
	// orders.refundApplied call ran out of its budget (tellOrder logs "Order not updated
	// synchronously") and, through the gateway whose timer starts first, the operator's 504.
	expect({ answer, ms, withinTimeoutWithMargin: ms < 4500 }).toEqual({ answer: { ok: "REFUNDED" }, ms: expect.any(Number), withinTimeoutWithMargin: true });
});
