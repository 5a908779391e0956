/**
 * Checkouts placed while the inventory node restarts wait for it instead of being REJECTED.
 *
 * A rolling restart: the inventory node is stopped gracefully (SIGTERM: it finishes what it has
 * and says goodbye, so its callers drop its endpoints and a call to warehouse.reserve is refused at
 * once as "not available") and started again a second and a half later, while twelve checkouts are
 * placed. The saga waits such a callee out (lib/saga/decide.ts `unavailable`, mixins/saga.mixin.ts
 * UNREACHED_ATTEMPTS, about 9 s) instead of spending the step's three attempts in 300 ms, so every
 * checkout ends CONFIRMED once the node is back (on 9e2551a, before the change, they ended REJECTED
 * FULFILLMENT_FAILED within half a second). DOMAIN.md's invariants hold: each key one order, one
 * payment captured, the stock down by exactly the confirmed quantity with nothing left reserved,
 * and no saga left running or parked. Kills without a goodbye are the crash-recovery test's.
 */
import { SHOP_NODES, TestCluster } from "../support/harness";

jest.setTimeout(300_000);

const cluster = new TestCluster(SHOP_NODES, { AUTH_RATE_LIMIT_MAX: "10000", RATE_LIMIT_MAX: "1000000" });
const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
const CHECKOUTS = 12;
let admin: string;

beforeAll(async () => {
	await cluster.start();
	admin = await cluster.waitForShop();
});

afterAll(() => cluster.stop());

const sum = (ws: any[], f: "onHand" | "reserved") => ws.reduce((n, w) => n + w[f], 0);

it("ends every checkout placed during a rolling restart of the inventory node CONFIRMED, with the invariants holding", async () => {
	const product = (await cluster.http("GET", "/api/v1/products?category=headphones&pageSize=1")).body.items[0];
	const stock = async () => (await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin })).body.warehouses as any[];
	const before = await stock();
	expect(sum(before, "onHand") - sum(before, "reserved")).toBeGreaterThanOrEqual(CHECKOUTS);
	const customers = await Promise.all(Array.from({ length: CHECKOUTS }, (_, i) => cluster.registerCustomer(`rst${i}-${Math.random().toString(36).slice(2, 6)}`)));
	const body = { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: product.id, quantity: 1 }] };

	await cluster.kill("inventory", "SIGTERM");
	const t0 = Date.now();
	// Each client sends its checkout, and again with the same key until it gets the order (a 503 or
	// 409 meanwhile is a retry, as API.md's idempotency rules allow).
	const checkouts = customers.map(async (customer, i) => {
		const key = `restart-${i}`;
		let answer = await cluster.http("POST", "/api/v1/orders", { token: customer.accessToken, body, headers: { "idempotency-key": key } });
		const first = answer.status;
		const deadline = Date.now() + 90_000;
		while (answer.status !== 201 && answer.status !== 202) {
			if (Date.now() > deadline) throw new Error(`no order for ${key}: ${answer.status} ${JSON.stringify(answer.body)}`);
			await new Promise(r => setTimeout(r, 250));
			answer = await cluster.http("POST", "/api/v1/orders", { token: customer.accessToken, body, headers: { "idempotency-key": key } });
		}
		let order: any = answer.body;
		while (order.status === "PENDING") {
			if (Date.now() > deadline) throw new Error(`order ${order.id} still PENDING`);
			await new Promise(r => setTimeout(r, 250));
			const res = await cluster.http("GET", `/api/v1/orders/${answer.body.id}`, { token: customer.accessToken });
			if (res.status === 200) order = res.body;
		}
		return { customer, key, first, order };
	});
	await new Promise(r => setTimeout(r, 1500));
	await cluster.respawn("inventory");
	const restartedAfterMs = Date.now() - t0;
	const results = await Promise.all(checkouts);

	const statuses = results.map(r => `${r.order.status}${r.order.failureReason ? ` ${r.order.failureReason}` : ""}`);
	process.stdout.write(`[restart] inventory back after ${restartedAfterMs} ms; first answers ${results.map(r => r.first).join(",")}; outcomes ${statuses.join(", ")}\n`);
	expect(statuses).toEqual(Array(CHECKOUTS).fill("CONFIRMED"));

	for (const r of results) {
		// Invariant 5: one key, one order. Invariant 3: captured, nothing left authorised.
		expect((await cluster.http("GET", "/api/v1/orders", { token: r.customer.accessToken })).body.total).toBe(1);
		const pays = (await cluster.http("GET", `/api/v1/admin/payments?orderId=${r.order.id}`, { token: admin })).body.items;
		expect(pays).toHaveLength(1);
		expect(pays[0].captured.amount - pays[0].refunded.amount).toBe(r.order.total.amount);
	}
	// Invariants 1 and 2: down by exactly what was confirmed, nothing left reserved.
	await cluster.waitUntil(async () => sum(await stock(), "reserved") === sum(before, "reserved"), 30_000, "no reservation left");
	const after = await stock();
	expect(sum(after, "onHand")).toBe(sum(before, "onHand") - CHECKOUTS);
	for (const w of after) expect(w.onHand).toBeGreaterThanOrEqual(w.reserved);
	// Invariant 4: no saga left running or parked.
	await cluster.waitUntil(async () => (await cluster.query("orders", "SELECT id FROM saga_instances WHERE status NOT IN ('COMPLETED', 'COMPENSATED')")).length === 0, 60_000, "every saga terminal");
});
