/**
 * Adversary: bursts of concurrent checkouts while the bus or a node fails (NATS restarted, inventory
 * SIGKILLed, commerce SIGSTOPped), idempotency keys raced, and a 100-checkout burst against the
 * PostgreSQL pools. After each, DOMAIN.md invariants 1–5 are checked from the services' own data.
 * Runs on a private nats-server (the shared one on 4222 is never restarted).
 */
import { SHOP_NODES, TestCluster } from "../support/harness";
import { ADDRESS, FAULT_ENV, OwnNats, checkInvariants, checkoutWithRetries, log, ordersPerCustomer, shopReady, tally } from "./support";

jest.setTimeout(900_000);

const nats = new OwnNats();
let cluster: TestCluster;
let admin: string;
const customers: { accessToken: string }[] = [];
let A: { id: string; sku: string };
let B: { id: string; sku: string };
const stockBefore: Record<string, any[]> = {};

async function servicesUp() {
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/orders", { token: admin })).status === 200, 60_000, "orders");
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/payments", { token: admin })).status === 200, 60_000, "payments");
	await cluster.waitUntil(async () => (await cluster.http("GET", `/api/v1/admin/inventory/${A.sku}`, { token: admin })).status === 200, 60_000, "warehouse");
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/fulfillments", { token: admin })).status === 200, 60_000, "fulfillment");
}

beforeAll(async () => {
	await nats.start();
	cluster = new TestCluster(
		SHOP_NODES,
		{ ...FAULT_ENV, TRANSPORTER: nats.url, REQUEST_TIMEOUT_MS: "3000", SAGA_LEASE_MS: "2000", SAGA_COMPENSATION_ATTEMPTS: "3", CHECKOUT_WAIT_MS: "2000" },
	);
	await cluster.start();
	let products: { id: string; sku: string }[];
	({ admin, products } = await shopReady(cluster, 2));
	[A, B] = [products[0], products[1]];
	// A: plenty; B: scarce (15), so the bursts also race for the last units (invariant 2).
	for (const [p, qty] of [[A, 1000], [B, 15]] as const) {
		const ws = (await cluster.http("GET", `/api/v1/admin/inventory/${p.sku}`, { token: admin })).body.warehouses;
		for (const [i, w] of ws.entries()) {
			const r = await cluster.http("PUT", `/api/v1/admin/inventory/${p.sku}`, { token: admin, body: { warehouseId: w.warehouseId, onHand: i === 0 ? qty : 0 } });
			expect(r.status).toBe(200);
		}
		stockBefore[p.sku] = (await cluster.http("GET", `/api/v1/admin/inventory/${p.sku}`, { token: admin })).body.warehouses;
	}
	for (let i = 0; i < 10; i++) customers.push(await cluster.registerCustomer());
	log("setup", { A: A.sku, B: B.sku, stockBefore });
}, 300_000);

afterAll(async () => {
	await cluster?.stop();
	await nats.stop();
});

const body = (i: number) => ({ shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_visa", items: i % 3 === 0 ? [{ productId: A.id, quantity: 1 }, { productId: B.id, quantity: 1 }] : [{ productId: A.id, quantity: 1 }] });

function burst(tag: string, n: number) {
	return Promise.all(Array.from({ length: n }, (_, i) => checkoutWithRetries(cluster, customers[i % customers.length].accessToken, `${tag}-${i}`, body(i))));
}

async function report(tag: string, outcomes: Awaited<ReturnType<typeof burst>>) {
	const inv = await checkInvariants(cluster, admin, stockBefore);
	const noOrder = outcomes.filter(o => !o.order).map(o => ({ key: o.key, attempts: o.attempts }));
	const slow = outcomes.flatMap(o => o.attempts).filter(a => a.ms > 10_000).length;
	log(tag, { attempts: tally(outcomes), noOrder, slowOver10s: slow, ...inv });
	return { inv, noOrder };
}

it("1. NATS restarted during a burst of 50 checkouts", async () => {
	const running = burst("nats", 50);
	await new Promise(r => setTimeout(r, 400));
	await nats.stop("SIGKILL");
	log("nats killed");
	await new Promise(r => setTimeout(r, 3000));
	await nats.start();
	log("nats restarted");
	const outcomes = await running;
	await servicesUp();
	const { inv, noOrder } = await report("nats", outcomes);
	expect(noOrder).toEqual([]);
	expect(inv.violations).toEqual([]);
});

it("2a. inventory SIGKILLed mid-burst and restarted", async () => {
	const running = burst("invkill", 50);
	await new Promise(r => setTimeout(r, 400));
	await cluster.kill("inventory", "SIGKILL");
	log("inventory killed");
	await new Promise(r => setTimeout(r, 2000));
	await cluster.respawn("inventory");
	const outcomes = await running;
	await servicesUp();
	const { inv, noOrder } = await report("invkill", outcomes);
	expect(noOrder).toEqual([]);
	expect(inv.violations).toEqual([]);
});

it("2b. commerce SIGSTOPped 5 s mid-burst then SIGCONT", async () => {
	const running = burst("commstop", 50);
	await new Promise(r => setTimeout(r, 400));
	cluster.signal("commerce", "SIGSTOP");
	log("commerce stopped");
	await new Promise(r => setTimeout(r, 5000));
	cluster.signal("commerce", "SIGCONT");
	log("commerce continued");
	const outcomes = await running;
	const { inv, noOrder } = await report("commstop", outcomes);
	expect(noOrder).toEqual([]);
	expect(inv.violations).toEqual([]);
});

it("2c. inventory SIGSTOPped 20 s mid-burst (past every step timeout) then SIGCONT: no reservation leaks", async () => {
	const running = burst("invstop", 40);
	await new Promise(r => setTimeout(r, 300));
	cluster.signal("inventory", "SIGSTOP");
	log("inventory stopped");
	await new Promise(r => setTimeout(r, 20_000));
	cluster.signal("inventory", "SIGCONT");
	log("inventory continued");
	const outcomes = await running;
	const { inv, noOrder } = await report("invstop", outcomes);
	expect(noOrder).toEqual([]);
	expect(inv.violations).toEqual([]);
	// An order of A only (1000 in stock) whose reserve step timed out is not OUT_OF_STOCK (FULFILLMENT_FAILED:
	// the warehouse did not answer; lib/orders/pricing.ts failureReason), which says nothing about stock.
	const finals = await Promise.all(outcomes.map(async (o, i) => ({ i, order: (await cluster.http("GET", `/api/v1/orders/${o.order.id}`, { token: o.token })).body })));
	const misreported = finals.filter(f => f.i % 3 !== 0 && f.order.failureReason === "OUT_OF_STOCK").map(f => f.order.id);
	log("invstop A-only orders told OUT_OF_STOCK", misreported.length);
	expect(misreported).toEqual([]);
});

it("3. one Idempotency-Key sent 10× concurrently, same body, different body, and across a commerce kill", async () => {
	const c = customers[0];
	const countBefore = await ordersPerCustomer(cluster, c.accessToken);
	const send = (key: string, b: unknown) => cluster.http("POST", "/api/v1/orders", { token: c.accessToken, body: b, headers: { "idempotency-key": key } }).catch(() => ({ status: "ERR" as const, body: null }));
	const same = await Promise.all(Array.from({ length: 10 }, () => send("race-same", body(1))));
	const mixed = await Promise.all(Array.from({ length: 10 }, (_, i) => send("race-mixed", i % 2 ? body(1) : { ...body(1), shippingMethod: "express" })));
	log("race", { same: same.map(r => r.status), mixed: mixed.map(r => r.status) });
	// Across a kill: first attempt, kill commerce, restart, concurrent retries (half with a different body).
	const first = send("race-kill", body(1));
	await new Promise(r => setTimeout(r, 40));
	await cluster.kill("commerce", "SIGKILL");
	const firstRes = await first;
	await cluster.respawn("commerce");
	await servicesUp();
	const afterKill = await Promise.all(Array.from({ length: 10 }, (_, i) => send("race-kill", i % 2 ? body(1) : { ...body(1), shippingMethod: "express" })));
	log("race-kill", { first: firstRes.status, after: afterKill.map(r => [r.status, (r.body as any)?.code ?? (r.body as any)?.error?.code ?? (r.body as any)?.status]) });
	// Settle, then each key must hold one order and replay the same answer.
	for (const key of ["race-same", "race-mixed", "race-kill"]) await checkoutWithRetries(cluster, c.accessToken, key, body(1), 60_000);
	const inv = await checkInvariants(cluster, admin, stockBefore);
	const countAfter = await ordersPerCustomer(cluster, c.accessToken);
	log("race result", { countBefore, countAfter, ...inv });
	expect(countAfter - countBefore).toBe(3);
	// The key is scoped to the caller (API.md): two customers racing one key get one order each.
	const other = customers[1];
	const otherBefore = await ordersPerCustomer(cluster, other.accessToken);
	const scoped = await Promise.all([c, other, c, other].map(u => cluster.http("POST", "/api/v1/orders", { token: u.accessToken, body: body(1), headers: { "idempotency-key": "race-scope" } })));
	log("race-scope", scoped.map(r => r.status));
	for (const u of [c, other]) await checkoutWithRetries(cluster, u.accessToken, "race-scope", body(1), 60_000);
	expect(await ordersPerCustomer(cluster, c.accessToken)).toBe(countAfter + 1);
	expect(await ordersPerCustomer(cluster, other.accessToken)).toBe(otherBefore + 1);
	// Whichever body arrived first owns the key: exactly one 201; the other body is 422 IDEMPOTENCY_KEY_REUSED (or 409 in flight), never a 2xx.
	const winners = [...mixed.entries()].filter(([, r]) => r.status === 201 || r.status === 202).map(([i]) => i);
	expect(winners).toHaveLength(1);
	for (const [i, r] of mixed.entries()) if (i % 2 !== winners[0] % 2) expect([409, 422]).toContain(r.status);
	for (const r of same) expect([201, 202, 409]).toContain(r.status);
	expect(inv.violations).toEqual([]);
});

it("5. 100 concurrent checkouts: no 500, nothing past the request timeout", async () => {
	const started = Date.now();
	const outcomes = await Promise.all(
		Array.from({ length: 100 }, async (_, i) => {
			const t0 = Date.now();
			const r = await cluster
				.http("POST", "/api/v1/orders", { token: customers[i % customers.length].accessToken, body: body(i), headers: { "idempotency-key": `pg-${i}` } })
				.catch(err => ({ status: `ERR ${err.name}`, ms: Date.now() - t0, body: null }));
			return { status: r.status, ms: r.ms, code: (r.body as any)?.error?.code ?? (r.body as any)?.code };
		}),
	);
	const statuses: Record<string, number> = {};
	for (const o of outcomes) statuses[`${o.status}${o.code ? ` ${o.code}` : ""}`] = (statuses[`${o.status}${o.code ? ` ${o.code}` : ""}`] ?? 0) + 1;
	const ms = outcomes.map(o => o.ms).sort((a, b) => a - b);
	log("pg", { statuses, p50: ms[50], p99: ms[98], max: ms[99], wall: Date.now() - started });
	// Let the client finish the 202s and retry the errors with the same keys.
	const settled = await Promise.all(Array.from({ length: 100 }, (_, i) => checkoutWithRetries(cluster, customers[i % customers.length].accessToken, `pg-${i}`, body(i))));
	const { inv, noOrder } = await report("pg", settled);
	expect(outcomes.filter(o => typeof o.status !== "number" || o.status >= 500)).toEqual([]);
	expect(noOrder).toEqual([]);
	expect(inv.violations).toEqual([]);
});
