/**
 * Fencing: the node driving a checkout saga is paused (SIGSTOP) in the middle of a step, past its
 * lease, while the other orders node takes the saga over and finishes it. The checkout has exactly
 * one outcome, and the paused driver, once it runs again, writes nothing: its lease's epoch is
 * gone, so it stops at its lease check instead of calling on.
 */
import { TestCluster } from "../support/harness";

jest.setTimeout(300_000);

const cluster = new TestCluster(
	[
		{ name: "gateway", services: ["api"] },
		{ name: "identity", services: ["auth", "customers", "users"] },
		{ name: "catalog", services: ["catalog"] },
		{ name: "inventory", services: ["warehouse", "fulfillment", "shipping"] },
		{ name: "commerce-a", services: ["cart", "orders", "payments"] },
		{ name: "commerce-b", services: ["cart", "orders", "payments"] },
	],
	{ AUTH_RATE_LIMIT_MAX: "10000", RATE_LIMIT_MAX: "1000000", SAGA_LEASE_MS: "2000", SAGA_RECOVER_MS: "300", CHECKOUT_WAIT_MS: "4000", REQUEST_TIMEOUT_MS: "5000" },
);

const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
let admin: string;

beforeAll(async () => {
	await cluster.start();
	admin = await cluster.waitForShop();
});

afterAll(async () => {
	for (const n of ["commerce-a", "commerce-b"]) cluster.signal(n, "SIGCONT");
	await cluster.stop();
});

it("finishes a checkout once when its driver is paused past its lease and another node takes over; the paused driver writes nothing after it resumes", async () => {
	const product = (await cluster.http("GET", "/api/v1/products?category=headphones&pageSize=1")).body.items[0];
	const stockBefore = (await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin })).body.warehouses;
	const customer = await cluster.registerCustomer();
	// tok_slow: the authorisation takes 2 s, so the driver is paused in the middle of a step.
	const body = { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_slow", items: [{ productId: product.id, quantity: 1 }] };
	const first = cluster.http("POST", "/api/v1/orders", { token: customer.accessToken, body, headers: { "idempotency-key": "paused-1" } });

	let saga: any;
	await cluster.waitUntil(async () => {
		[saga] = await cluster.query("orders", "SELECT id, epoch, status, lease_owner, data FROM saga_instances");
		return Boolean(saga);
	}, 20_000, "the saga to start");
	const driver = String(saga.lease_owner).startsWith(`commerce-a-${cluster.id}`) ? "commerce-a" : "commerce-b";
	const other = driver === "commerce-a" ? "commerce-b" : "commerce-a";
	cluster.signal(driver, "SIGSTOP");
	expect({ epoch: Number(saga.epoch), status: saga.status }).toEqual({ epoch: 1, status: "RUNNING" });

	// The other node takes it over (epoch 2) once the lease ran out, and finishes it.
	await cluster.waitUntil(async () => {
		[saga] = await cluster.query("orders", "SELECT id, epoch, status, lease_owner FROM saga_instances");
		return saga.status === "COMPLETED";
	}, 60_000, "the other node to finish the saga");
	expect(Number(saga.epoch)).toBe(2);
	const orderId = JSON.parse(JSON.stringify((await cluster.query("orders", "SELECT data FROM saga_instances"))[0].data)).orderId;
	const snapshot = async () => ({
		saga: await cluster.query("orders", "SELECT status, epoch, lease_owner, updated_at FROM saga_instances"),
		log: await cluster.query("orders", "SELECT step, phase, status, epoch FROM saga_log ORDER BY at, id"),
		order: await cluster.query("orders", "SELECT status, history, updated_at FROM orders"),
		events: await cluster.query("orders", "SELECT name FROM outbox_events ORDER BY occurred_at"),
		payments: await cluster.query("payments", "SELECT status, captured, refunded, provider_ref, updated_at FROM payments"),
		fulfillments: await cluster.query("fulfillment", "SELECT id, status FROM fulfillments ORDER BY id"),
		reservations: await cluster.query("warehouse", "SELECT status FROM reservations"),
	});
	const before = await snapshot();

	// The paused driver runs again: its step's answer arrives, its lease check finds the epoch gone, and it stops.
	cluster.signal(driver, "SIGCONT");
	await cluster.waitUntil(async () => /taken over by another node; this driver stops/.test(cluster.logs(driver)), 30_000, "the paused driver to notice it lost the saga");
	await new Promise(r => setTimeout(r, 1500));
	expect(await snapshot()).toEqual(before);

	// Exactly one outcome: one confirmation, one payment captured once, stock taken once, every log entry from the new epoch.
	expect(before.log.length).toBeGreaterThan(0);
	expect(before.log.every((l: any) => Number(l.epoch) === 2)).toBe(true);
	expect(before.order).toHaveLength(1);
	expect(before.order[0].status).toBe("CONFIRMED");
	expect((before.order[0].history as any[]).map(h => h.status)).toEqual(["PENDING", "CONFIRMED"]);
	expect(before.events.map((e: any) => e.name)).toEqual(["orders.order.created", "orders.order.confirmed"]);
	expect(before.payments).toEqual([expect.objectContaining({ status: "CAPTURED", refunded: 0 })]);
	expect(before.reservations).toEqual([{ status: "COMMITTED" }]);
	expect(before.fulfillments.map((f: any) => f.status).every((s: string) => s === "PENDING")).toBe(true);
	const stockAfter = (await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin })).body.warehouses;
	expect(stockAfter.reduce((n: number, w: any) => n + w.onHand, 0)).toBe(stockBefore.reduce((n: number, w: any) => n + w.onHand, 0) - 1);
	expect(stockAfter.reduce((n: number, w: any) => n + w.reserved, 0)).toBe(stockBefore.reduce((n: number, w: any) => n + w.reserved, 0));

	// The request that went to the paused node got no answer in time; the client's retry gets the one order.
	expect([201, 202, 503, 504]).toContain((await first).status);
	const retry = await cluster.http("POST", "/api/v1/orders", { token: customer.accessToken, body, headers: { "idempotency-key": "paused-1" } });
	expect(retry.status).toBe(201);
	expect(retry.body).toMatchObject({ id: orderId, status: "CONFIRMED" });
	expect(other).not.toBe(driver);
});
