/**
 * The REPL's `order <id|number>`: an operator sees one order's whole story — status history, the
 * checkout saga's log, payments, fulfillments and the shipment — in one view, by id or number.
 */
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

jest.setTimeout(60_000);

let broker: ServiceBroker;
const customer = { meta: { user: { id: "cust-timeline", typ: "customer", roles: [] }, idempotencyKey: "timeline-1" } };
const ops = { meta: { user: { id: "ops-1", typ: "admin", roles: ["ops"] } } };

beforeAll(async () => {
	useTestEnv({ SEED_DEMO: "true" });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(["catalog", "cart", "orders", "payments", "warehouse", "fulfillment", "shipping"], { logger: false, namespace: `timeline-${Math.random()}` });
	await broker.start();
});

afterAll(() => broker?.stop());

async function run(ref: string): Promise<string> {
	const { orderCommands } = require("../../../lib/repl/order-commands") as typeof import("../../../lib/repl/order-commands");
	const printed: string[] = [];
	const spy = jest.spyOn(console, "log").mockImplementation((s: string) => void printed.push(s));
	try {
		await orderCommands.find(c => c.command.startsWith("order "))!.action(broker, { ref, options: {} });
	} finally {
		spy.mockRestore();
	}
	return printed.join("\n");
}

it("shows an order's status history, saga log, payment, fulfillment and shipment in one view, by number or id", async () => {
	const { DEMO_PRODUCTS } = require("../../../lib/catalog/demo-data") as typeof import("../../../lib/catalog/demo-data");
	const order: any = await broker.call(
		"orders.create",
		{ shippingAddress: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: DEMO_PRODUCTS[0].id, quantity: 1 }] },
		customer,
	);
	expect(order.status).toBe("CONFIRMED");
	const [f]: any[] = await broker.call("fulfillment.byOrder", { orderId: order.id });
	for (const verb of ["pick", "pack", "ship"]) await broker.call(`fulfillment.${verb}`, { id: f.id }, ops);
	// The order learns of the shipment from the fulfillment's event.
	for (let i = 0; i < 100 && ((await broker.call("orders.get", { id: order.id }, ops)) as any).status !== "SHIPPED"; i++) await new Promise(r => setTimeout(r, 50));

	const view = await run(order.number);
	expect(view).toContain(`Order ${order.number} (${order.id}): `);
	expect(view).toMatch(/order\s+status PENDING/);
	expect(view).toMatch(/order\s+status CONFIRMED/);
	expect(view).toMatch(/order\s+status SHIPPED/);
	for (const step of ["authorize", "reserve", "fulfill", "capture", "commit"]) expect(view).toMatch(new RegExp(`saga checkout \\S+\\s+${step} forward DONE`));
	expect(view).toMatch(/Payments\n.*\n.*\n\S+\s+CAPTURED/);
	expect(view).toMatch(new RegExp(`Fulfillments\\n.*\\n.*\\n${f.id}\\s+SHIPPED\\s+\\S+`));
	expect(view).toMatch(/shipment \S+\s+\S+/);
	// The saga log, history and shipment events are in time order.
	const stamps = [...view.matchAll(/^(\d{4}-\d\d-\d\dT[\d:.]+Z)\s/gm)].map(m => m[1]);
	expect(stamps.length).toBeGreaterThan(8);
	expect([...stamps].sort()).toEqual(stamps);
	expect(await run(order.id)).toBe(view);
});

it("says so when no order has that id or number", async () => {
	expect(await run("MC-NOPE")).toBe("order failed: Order not found (ORDER_NOT_FOUND)");
});
