/**
 * A STUCK saga is not an end state: once the dependency whose compensation kept failing works
 * again, the saga is taken over again by itself (growing backoff), finishes, and the customer's
 * authorisation is voided. Each retry is counted; the gauge shows the saga parked, then gone.
 */
import type { ServiceBroker } from "moleculer";
import { resetConfig } from "../../../config";
import { useTestEnv } from "../../support/env";
import { waitFor } from "../events/helpers";

jest.setTimeout(60_000);

let broker: ServiceBroker;
const customer = { meta: { user: { id: "cust-auto", typ: "customer", roles: [] }, idempotencyKey: "auto-1" } };
const system = { meta: { user: { id: "system", typ: "system", roles: [] } } };

beforeAll(async () => {
	useTestEnv({ SEED_DEMO: "true", SAGA_COMPENSATION_ATTEMPTS: "2", SAGA_STUCK_RETRY_BASE_MS: "300", SAGA_STUCK_RETRY_MAX_MS: "1000", SAGA_RECOVER_MS: "100", CHECKOUT_WAIT_MS: "8000" });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(["catalog", "cart", "orders", "payments", "warehouse", "fulfillment", "shipping"], { logger: false, namespace: `auto-${Math.random()}` });
	await broker.start();
});

afterAll(async () => {
	process.env.TEST_FAULTS = "";
	resetConfig();
	await broker?.stop();
});

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
	const { promRegistry, refreshScrapeGauges } = require("../../../lib/metrics") as typeof import("../../../lib/metrics");
	// State gauges (saga_instances) are read from the databases when scraped: scrape first.
	await refreshScrapeGauges(broker);
	const m = promRegistry.getSingleMetric(name);
	if (!m) return 0;
	return (await m.get()).values.filter(v => Object.entries(labels).every(([k, x]) => (v.labels as any)[k] === x)).reduce((n, v) => n + v.value, 0);
}

it("retries a STUCK saga by itself once its dependency works again, voids the authorisation and rejects the order", async () => {
	const { DEMO_PRODUCTS } = require("../../../lib/catalog/demo-data") as typeof import("../../../lib/catalog/demo-data");
	const retriesBefore = await metric("saga_stuck_retries_total", { saga: "checkout" });

	// The warehouse cannot release: the compensation of reserve keeps failing, the saga parks.
	process.env.TEST_FAULTS = "fail:warehouse.release";
	resetConfig();
	const order: any = await broker.call(
		"orders.create",
		{ shippingAddress: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, shippingMethod: "standard", paymentToken: "tok_capture_fails", items: [{ productId: DEMO_PRODUCTS[2].id, quantity: 1 }] },
		customer,
	);
	expect(order.status).toBe("PENDING");
	await waitFor(async () => ((await broker.call("orders.sagas", { status: "STUCK" }, system)) as any[]).length === 1);
	expect(await metric("saga_instances", { saga: "checkout", status: "STUCK" })).toBe(1);
	// While it cannot release, its automatic retries park it again (each counted), and the authorisation stays open.
	await waitFor(async () => (await metric("saga_stuck_retries_total", { saga: "checkout" })) >= retriesBefore + 1);
	expect(((await broker.call("orders.get", { id: order.id }, customer)) as any).payment).toEqual({ status: "AUTHORIZED" });

	// The dependency works again: nobody acts, the saga finishes on its own.
	process.env.TEST_FAULTS = "";
	resetConfig();
	await waitFor(async () => ((await broker.call("orders.get", { id: order.id }, customer)) as any).status === "REJECTED", 20_000);
	const final: any = await broker.call("orders.get", { id: order.id }, customer);
	expect(final).toMatchObject({ status: "REJECTED", failureReason: "PAYMENT_DECLINED", payment: { status: "VOIDED" } });
	expect(final.fulfillments.every((f: any) => f.status === "CANCELLED")).toBe(true);
	expect(await broker.call("orders.sagas", { status: "STUCK" }, system)).toEqual([]);
	expect(await metric("saga_instances", { saga: "checkout", status: "STUCK" })).toBe(0);
	const [saga] = (await broker.call("orders.sagas", { status: "COMPENSATED" }, system)) as any[];
	expect(saga.attempts).toBeGreaterThanOrEqual(1);
	expect(saga.epoch).toBe(saga.attempts + 1);
	const log: any = await broker.call("orders.sagaLog", { id: saga.id }, system);
	// Every compensation that failed is in the log, with the drive (epoch) that tried it; the last one released.
	expect(log.log.filter((l: any) => l.phase === "compensate" && l.step === "reserve" && l.status === "FAILED").length).toBeGreaterThanOrEqual(2);
	expect(log.log.filter((l: any) => l.phase === "compensate" && l.status === "DONE").map((l: any) => l.step)).toEqual(["fulfill", "reserve", "authorize"]);
	// The stock it held is back.
	expect(await broker.call("warehouse.availability", { sku: DEMO_PRODUCTS[2].sku })).toMatchObject({ inStock: true });
});
