/**
 * Crash recovery: the commerce node (orders) is SIGKILLed at each step boundary and each
 * compensation boundary of the checkout saga (test-only fault switch, inert unless TEST_FAULTS
 * names the point). After a restart every saga is terminal and the invariants hold.
 */
import { TestCluster } from "../support/harness";

jest.setTimeout(600_000);

const cluster = new TestCluster(
	[
		{ name: "gateway", services: ["api"] },
		{ name: "identity", services: ["auth", "customers", "users"] },
		{ name: "catalog", services: ["catalog"] },
		{ name: "commerce", services: ["cart", "orders", "payments"] },
		{ name: "inventory", services: ["warehouse", "fulfillment", "shipping"] },
	],
	// A dead driver's lease runs out quickly so that the restarted node resumes its sagas at once.
	{ AUTH_RATE_LIMIT_MAX: "10000", RATE_LIMIT_MAX: "1000000", REQUEST_TIMEOUT_MS: "3000", SAGA_LEASE_MS: "2000", SAGA_RECOVER_MS: "500", CHECKOUT_WAIT_MS: "2000" },
);

const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
let admin: string;
let product: { id: string; sku: string };

async function servicesUp() {
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/orders", { token: admin })).status === 200, 60_000, "orders");
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/payments", { token: admin })).status === 200, 60_000, "payments");
}

beforeAll(async () => {
	await cluster.start();
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/products?pageSize=1")).status === 200, 60_000, "catalog");
	await cluster.waitUntil(async () => (await cluster.http("POST", "/api/v1/auth/login", { body: { email: "x@example.com", password: "nope" } })).status === 401, 60_000, "identity");
	admin = (await cluster.loginAdmin()).accessToken;
	await servicesUp();
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/inventory/HP-1001", { token: admin })).status === 200, 60_000, "warehouse");
	product = (await cluster.http("GET", "/api/v1/products?category=speakers&pageSize=1")).body.items[0];
});

afterAll(() => cluster.stop());

const FORWARD = ["authorize", "reserve", "fulfill", "capture", "commit"].flatMap(s => [`saga.checkout.before:${s}`, `saga.checkout.after:${s}`]);
const COMPENSATION = ["capture", "fulfill", "reserve", "authorize"].flatMap(s => [`saga.checkout.compensate.before:${s}`, `saga.checkout.compensate.after:${s}`]);

const cases: [string, string, string][] = [
	...FORWARD.map(p => [p, "tok_visa", "CONFIRMED"] as [string, string, string]),
	...COMPENSATION.map(p => [p, "tok_capture_fails", "REJECTED"] as [string, string, string]),
];

it.each(cases)("killed at %s, the saga still ends (%s → %s) and the invariants hold", async (point, token, expected) => {
	const stockBefore = (await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin })).body.warehouses;
	await cluster.kill("commerce", "SIGTERM");
	await cluster.respawn("commerce", { TEST_FAULTS: `kill:${point}` });
	await servicesUp();
	const customer = await cluster.registerCustomer();

	const body = { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: token, items: [{ productId: product.id, quantity: 1 }] };
	const first = await cluster.http("POST", "/api/v1/orders", { token: customer.accessToken, body, headers: { "idempotency-key": "crash-1" } });
	expect([201, 202, 503]).toContain(first.status);
	await cluster.exited("commerce");

	await cluster.respawn("commerce", { TEST_FAULTS: "" });
	await servicesUp();
	let orders: any[] = [];
	await cluster.waitUntil(async () => {
		orders = (await cluster.http("GET", "/api/v1/orders", { token: customer.accessToken })).body.items;
		return orders.length === 1 && orders[0].status !== "PENDING";
	}, 60_000, `the saga killed at ${point} to finish`);
	const order = (await cluster.http("GET", `/api/v1/orders/${orders[0].id}`, { token: customer.accessToken })).body;
	expect(order.status).toBe(expected);

	// The client's retry with the same key finds that one order (invariant 5).
	const retry = await cluster.http("POST", "/api/v1/orders", { token: customer.accessToken, body, headers: { "idempotency-key": "crash-1" } });
	expect([201, 409]).toContain(retry.status);
	if (retry.status === 201) expect(retry.body.id).toBe(order.id);
	expect((await cluster.http("GET", "/api/v1/orders", { token: customer.accessToken })).body.total).toBe(1);

	// Money (invariant 3): captured − refunded is the total when confirmed, else 0; nothing left authorised.
	const pays = (await cluster.http("GET", `/api/v1/admin/payments?orderId=${order.id}`, { token: admin })).body.items;
	expect(pays.length).toBe(1);
	expect(pays[0].captured - pays[0].refunded).toBe(expected === "CONFIRMED" ? order.total.amount : 0);
	expect(pays[0].status).not.toBe("AUTHORIZED");

	// Stock (invariants 1, 2): nothing left reserved, on hand down by one exactly when confirmed.
	const stockAfter = (await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin })).body.warehouses;
	for (const w of stockAfter) expect(w.onHand).toBeGreaterThanOrEqual(w.reserved);
	expect(stockAfter.reduce((n: number, w: any) => n + w.reserved, 0)).toBe(stockBefore.reduce((n: number, w: any) => n + w.reserved, 0));
	const onHand = (ws: any[]) => ws.reduce((n, w) => n + w.onHand, 0);
	expect(onHand(stockAfter)).toBe(onHand(stockBefore) - (expected === "CONFIRMED" ? 1 : 0));
});
