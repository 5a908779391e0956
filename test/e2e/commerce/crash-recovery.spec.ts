/**
 * Crash recovery: a node is SIGKILLed at every point of every step and every compensation of the
 * checkout saga — the driver (orders) before each call and after the last, each command's callee
 * after its write committed but before it answered, and the payment service between the
 * provider's answer and its commit. Once the node is back, every checkout is terminal, the
 * invariants of DOMAIN.md hold (stock, money, one order per key) and no saga is left STUCK.
 *
 * One cluster for every case: a fault file armed per case (lib/faults.ts) kills the node at its
 * point; only that node is started again.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHOP_NODES, TestCluster } from "../support/harness";

jest.setTimeout(900_000);

const FAULTS = join(mkdtempSync(join(tmpdir(), "mc-faults-")), "faults");
writeFileSync(FAULTS, "");

const cluster = new TestCluster(
	SHOP_NODES,
	// A dead driver's lease runs out quickly, so a restarted (or the other) node resumes its sagas at once; parked sagas are retried soon.
	{
		AUTH_RATE_LIMIT_MAX: "10000",
		RATE_LIMIT_MAX: "1000000",
		REQUEST_TIMEOUT_MS: "3000",
		SAGA_LEASE_MS: "2000",
		SAGA_RECOVER_MS: "300",
		SAGA_COMPENSATION_ATTEMPTS: "3",
		SAGA_STUCK_RETRY_BASE_MS: "500",
		SAGA_STUCK_RETRY_MAX_MS: "2000",
		CHECKOUT_WAIT_MS: "2000",
		TEST_FAULTS_FILE: FAULTS,
	},
);

const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
let admin: string;
let product: { id: string; sku: string };

async function servicesUp() {
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/orders", { token: admin })).status === 200, 60_000, "orders");
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/payments", { token: admin })).status === 200, 60_000, "payments");
	await cluster.waitUntil(async () => (await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin })).status === 200, 60_000, "warehouse");
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/fulfillments", { token: admin })).status === 200, 60_000, "fulfillment");
}

beforeAll(async () => {
	await cluster.start();
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/products")).status === 200, 60_000, "catalog");
	await cluster.waitUntil(async () => (await cluster.http("POST", "/api/v1/auth/login", { body: { email: "x@example.com", password: "nope" } })).status === 401, 60_000, "identity");
	admin = (await cluster.loginAdmin()).accessToken;
	product = (await cluster.http("GET", "/api/v1/products?category=speakers&pageSize=1")).body.items[0];
	await servicesUp();
});

afterAll(() => cluster.stop());

type Scenario = "visa" | "capture-fails" | "commit-fails";
type Expected = "CONFIRMED" | "REJECTED" | "terminal";

/** Forward: tok_visa confirms. Compensating every step: the commit step fails for good (tok_visa, `fail:command.commit.before`). */
const TOKENS: Record<Scenario, string> = { visa: "tok_visa", "capture-fails": "tok_capture_fails", "commit-fails": "tok_visa" };
const steps = ["authorize", "reserve", "fulfill", "capture", "commit"];

const cases: [string, Scenario, "commerce" | "inventory", Expected][] = [
	// The driver, before each call and after the last (it writes nothing between steps, so "after a step" is "before the next").
	...steps.map(s => [`saga.checkout.before:${s}`, "visa", "commerce", "CONFIRMED"] as [string, Scenario, "commerce", Expected]),
	["saga.checkout.after:commit", "visa", "commerce", "CONFIRMED"],
	// The driver while compensating, before each compensation and after the last.
	...["capture", "fulfill", "reserve", "authorize"].map(s => [`saga.checkout.compensate.before:${s}`, "commit-fails", "commerce", "REJECTED"] as [string, Scenario, "commerce", Expected]),
	["saga.checkout.compensate.after:authorize", "commit-fails", "commerce", "REJECTED"],
	// The order and its saga written, the answer not sent; or nothing written yet.
	["command.checkout.before", "visa", "commerce", "CONFIRMED"],
	["command.checkout.after", "visa", "commerce", "CONFIRMED"],
	// Payments (on the driver's node): the provider answered but nothing committed; committed but not answered.
	["payments.authorize.afterProvider", "visa", "commerce", "CONFIRMED"],
	["command.authorize.after", "visa", "commerce", "CONFIRMED"],
	["payments.capture.afterProvider", "visa", "commerce", "CONFIRMED"],
	["command.capture.after", "visa", "commerce", "CONFIRMED"],
	["command.void.after", "capture-fails", "commerce", "REJECTED"],
	["command.refund.after", "commit-fails", "commerce", "REJECTED"],
	// The inventory node, committed but not answered: the driver retries the same key; whether it gets
	// through before its attempts run out decides between confirmed and compensated — both must be whole.
	["command.reserve.after", "visa", "inventory", "terminal"],
	["command.fulfillment.create.after", "visa", "inventory", "terminal"],
	["command.commit.after", "visa", "inventory", "terminal"],
	["command.release.after", "capture-fails", "inventory", "REJECTED"],
	["command.fulfillment.cancel.after", "capture-fails", "inventory", "REJECTED"],
];

const sum = (ws: any[], f: "onHand" | "reserved") => ws.reduce((n, w) => n + w[f], 0);

/** The product's stock per warehouse; an error answer (a 503 while a node restarts) is read again, it says nothing about the stock. */
async function stockOf(): Promise<any[]> {
	let warehouses: any[] | undefined;
	await cluster.waitUntil(async () => {
		const res = await cluster.http("GET", `/api/v1/admin/inventory/${product.sku}`, { token: admin });
		warehouses = res.status === 200 ? res.body.warehouses : undefined;
		return Array.isArray(warehouses);
	}, 60_000, "the product's stock");
	return warehouses!;
}

it.each(cases)("killed at %s (%s, the %s node), the checkout ends %s and the invariants hold", async (point, scenario, node, expected) => {
	let orderId: string | undefined;
	try {
		orderId = await killedCheckout(point, scenario, node, expected);
	} catch (err) {
		orderId ??= (err as { orderId?: string }).orderId;
		// What the saga did, for the failure's message.
		const log = orderId ? await cluster.query("orders", "SELECT l.step, l.phase, l.status, l.epoch, l.detail FROM saga_log l JOIN saga_instances s ON s.id = l.saga_id WHERE s.data::text LIKE :id ORDER BY l.at", { id: `%${orderId}%` }) : [];
		(err as Error).message += `\nsaga log: ${JSON.stringify(log)}\n${cluster.logs("commerce").slice(-4000)}`;
		throw err;
	}
});

async function killedCheckout(point: string, scenario: Scenario, node: "commerce" | "inventory", expected: Expected): Promise<string> {
	let stockBefore: any[];
	let customer: any;
	let key: string;
	const body = { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: TOKENS[scenario], items: [{ productId: product.id, quantity: 1 }] };
	for (let attempt = 1; ; attempt++) {
		stockBefore = await stockOf();
		customer = await cluster.registerCustomer();
		key = `crash-${point}-${attempt}`;
		writeFileSync(FAULTS, [`kill:${point}`, ...(scenario === "commit-fails" ? ["fail:command.commit.before"] : [])].join(","));
		const first = await cluster.http("POST", "/api/v1/orders", { token: customer.accessToken, body, headers: { "idempotency-key": key } });
		expect([201, 202, 503, 504]).toContain(first.status);
		const died = await cluster.exited(node).then(
			() => true,
			(err: Error) => {
				if (attempt >= 3) throw err;
				return false;
			},
		);
		if (died) break;
		// The point was never reached: the checkout was decided before it (a step answered "not
		// available" past the saga's patience, or the gateway could not reach orders right after the
		// previous case's restart). That is not what this case is about: run it again after 11 s (a
		// breaker's half-open time and more), with a new customer and key. It is logged, so a run
		// shows how often it happens.
		writeFileSync(FAULTS, "");
		process.stdout.write(`[crash] ${point}: not reached (first answer ${first.status} ${first.body?.status ?? ""} ${first.body?.failureReason ?? ""}${first.body?.type ? `${first.body.type}: ${first.body.message}` : ""}); again in 11 s\n`);
		if (first.status === 503) process.stdout.write(`[crash] gateway log:\n${cluster.logs("gateway").slice(-1500)}\n[crash] commerce log:\n${cluster.logs("commerce").slice(-1500)}\n`);
		await new Promise(r => setTimeout(r, 11_000));
	}
	writeFileSync(FAULTS, "");
	await cluster.respawn(node);
	await servicesUp();

	// The client retries its key until it gets the order (409 while it runs); killed before anything was written, the retry creates it.
	let answer: any;
	await cluster.waitUntil(async () => {
		answer = await cluster.http("POST", "/api/v1/orders", { token: customer.accessToken, body, headers: { "idempotency-key": key } });
		return answer.status === 201 || answer.status === 202;
	}, 120_000, `an answer for the checkout killed at ${point}`);
	let order: any;
	await cluster.waitUntil(async () => {
		const res = await cluster.http("GET", `/api/v1/orders/${answer.body.id}`, { token: customer.accessToken });
		order = res.body;
		// An error answer (a 503 while a node restarts) is not the order's end, nor is an answer
		// without its fulfillments: GET /orders/:id leaves out a part whose service cannot answer
		// (here the inventory node, briefly marked gone by its callers right after its restart;
		// seen once in CI), and the invariants below read that part.
		return res.status === 200 && order.status !== "PENDING" && Array.isArray(order.fulfillments);
	}, 120_000, `the checkout killed at ${point} to end`);
	const orderId = order.id as string;
	try {
		await invariants(customer, key, body, answer, order, expected, stockBefore);
	} catch (err) {
		(err as Error & { orderId?: string }).orderId = orderId;
		throw err;
	}
	return orderId;
}

async function invariants(customer: any, key: string, body: unknown, answer: any, order: any, expected: Expected, stockBefore: any[]) {
	expect(["CONFIRMED", "REJECTED"]).toContain(order.status);
	if (expected !== "terminal") expect(order.status).toBe(expected);
	// Invariant 5: one key, one order — and its answer replays.
	expect((await cluster.http("GET", "/api/v1/orders", { token: customer.accessToken })).body.total).toBe(1);
	const again = await cluster.http("POST", "/api/v1/orders", { token: customer.accessToken, body, headers: { "idempotency-key": key } });
	expect([again.status, again.body]).toEqual([answer.status, answer.body]);

	// Invariant 3: captured − refunded is the total when confirmed, else 0; nothing left authorised; one payment.
	const pays = (await cluster.http("GET", `/api/v1/admin/payments?orderId=${order.id}`, { token: admin })).body.items;
	expect(pays).toHaveLength(1);
	expect(pays[0].captured.amount - pays[0].refunded.amount).toBe(order.status === "CONFIRMED" ? order.total.amount : 0);
	expect(pays[0].status).not.toBe("AUTHORIZED");

	// Invariants 1 and 2: nothing left reserved, on hand down by one exactly when confirmed.
	const stockAfter = await stockOf();
	for (const w of stockAfter) expect(w.onHand).toBeGreaterThanOrEqual(w.reserved);
	expect(sum(stockAfter, "reserved")).toBe(sum(stockBefore, "reserved"));
	expect(sum(stockAfter, "onHand")).toBe(sum(stockBefore, "onHand") - (order.status === "CONFIRMED" ? 1 : 0));
	expect(order.fulfillments.length).toBeGreaterThanOrEqual(order.status === "CONFIRMED" ? 1 : 0);
	for (const f of order.fulfillments) expect(f.status).toBe(order.status === "CONFIRMED" ? "PENDING" : "CANCELLED");

	// Invariant 4: no saga left running or parked.
	await cluster.waitUntil(async () => (await cluster.query("orders", "SELECT id FROM saga_instances WHERE status NOT IN ('COMPLETED', 'COMPENSATED')")).length === 0, 60_000, "every saga terminal");
}
