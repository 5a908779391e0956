/**
 * A compensation that keeps failing parks the saga as STUCK (counted in a metric, visible to
 * operators); the REPL's saga-retry then finishes it once the dependency works again.
 */
import type { ServiceBroker } from "moleculer";
import { resetConfig } from "../../../config";
import { useTestEnv } from "../../support/env";

jest.setTimeout(60_000);

let broker: ServiceBroker;
const customer = { meta: { user: { id: "cust-1", typ: "customer", roles: [] }, idempotencyKey: "stuck-1" } };
const system = { meta: { user: { id: "system", typ: "system", roles: [] } } };

beforeAll(async () => {
	useTestEnv({ SEED_DEMO: "true", SAGA_COMPENSATION_ATTEMPTS: "2", CHECKOUT_WAIT_MS: "8000" });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(["catalog", "cart", "orders", "payments", "warehouse", "fulfillment", "shipping"], { logger: false, namespace: `stuck-${Math.random()}` });
	await broker.start();
});

afterAll(() => broker?.stop());

it("parks a saga whose compensation keeps failing, then finishes it from the REPL", async () => {
	const { promRegistry } = require("../../../lib/metrics") as typeof import("../../../lib/metrics");
	const { DEMO_PRODUCTS } = require("../../../lib/catalog/demo-data") as typeof import("../../../lib/catalog/demo-data");
	const stuckBefore = (await promRegistry.getSingleMetric("saga_stuck_total")!.get()).values.reduce((n, v) => n + v.value, 0);

	process.env.TEST_FAULTS = "fail:warehouse.release";
	resetConfig();
	const order: any = await broker.call(
		"orders.create",
		{ shippingAddress: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, shippingMethod: "standard", paymentToken: "tok_capture_fails", items: [{ productId: DEMO_PRODUCTS[0].id, quantity: 1 }] },
		customer,
	);
	expect(order.status).toBe("PENDING");
	const stuck: any[] = await broker.call("orders.sagas", { status: "STUCK" }, system);
	expect(stuck).toEqual([expect.objectContaining({ name: "checkout", status: "STUCK", failure: expect.objectContaining({ step: "capture" }) })]);
	const stuckAfter = (await promRegistry.getSingleMetric("saga_stuck_total")!.get()).values.reduce((n, v) => n + v.value, 0);
	expect(stuckAfter).toBe(stuckBefore + 1);
	const log: any = await broker.call("orders.sagaLog", { id: stuck[0].id }, system);
	expect(log.log.filter((l: any) => l.phase === "compensate" && l.step === "reserve" && l.status === "FAILED")).toHaveLength(2);

	// The operator fixes the cause and retries from the REPL.
	process.env.TEST_FAULTS = "";
	resetConfig();
	const { sagaCommands } = require("../../../lib/repl/saga-commands") as typeof import("../../../lib/repl/saga-commands");
	const printed: string[] = [];
	const spy = jest.spyOn(console, "log").mockImplementation((s: string) => void printed.push(s));
	await sagaCommands.find(c => c.command.startsWith("saga-retry"))!.action(broker, { id: stuck[0].id, options: {} });
	spy.mockRestore();
	expect(printed.join("\n")).toContain("COMPENSATED");
	const final: any = await broker.call("orders.get", { id: order.id }, customer);
	expect(final).toMatchObject({ status: "REJECTED", failureReason: "PAYMENT_DECLINED", payment: { status: "VOIDED" } });
	expect(await broker.call("orders.sagas", { status: "STUCK" }, system)).toEqual([]);
});
