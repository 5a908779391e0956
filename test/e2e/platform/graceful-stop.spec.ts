/**
 * Stopping real node processes (lib/graceful.ts): after a fault run an idle gateway tracks no
 * running context, and a gateway given SIGTERM in the middle of a checkout burst answers nothing
 * new, lets the burst finish, and exits within SHUTDOWN_TIMEOUT_MS.
 */
import { DEMO_PRODUCTS } from "../../../lib/catalog/demo-data";
import { SHOP_NODES, TestCluster } from "../support/harness";

jest.setTimeout(180_000);

const SHUTDOWN_TIMEOUT_MS = 10_000;
const cluster = new TestCluster(
	SHOP_NODES,
	// Checkouts answer within CHECKOUT_WAIT_MS (4 s, else 202): the request timeout leaves them room under a burst.
	{ REQUEST_TIMEOUT_MS: "8000", SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS), RATE_LIMIT_MAX: "100000", AUTH_RATE_LIMIT_MAX: "1000" },
);

beforeAll(async () => {
	await cluster.start();
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/products")).status === 200, 60_000, "catalog");
});

afterAll(() => cluster.stop());

/** A gauge of the node's own /metrics. */
async function gauge(node: string, name: string): Promise<number> {
	const text = await (await fetch(`http://127.0.0.1:${cluster.metricsPort(node)}/metrics`)).text();
	const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
	if (!m) throw new Error(`${name} not exported by ${node}`);
	return Number(m[1]);
}

it("leaves an idle gateway with no running context after calls to a node that died timed out", async () => {
	await cluster.kill("catalog", "SIGKILL");
	// Calls to the dead node time out (the gateway has not noticed its death yet).
	// Pages nobody read before: a cached answer would still be served (lib/cache.ts).
	const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => cluster.http("GET", `/api/v1/products?page=${100 + i}`).then(r => r.status)));
	expect(answers.every(s => s === 503)).toBe(true);
	// It comes back under the same node id, as a supervised process does: nothing tells the
	// gateway that the calls it sent to the old process will never be answered.
	await cluster.respawn("catalog");
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/products?page=200")).status === 200, 60_000, "catalog back");
	await cluster.waitUntil(async () => (await gauge("gateway", "node_running_contexts")) === 0, 5000, "no running contexts on the idle gateway");
});

it("stops a gateway in the middle of a checkout burst: nothing new answered, the burst finishes, gone within its timeout", async () => {
	const customer = await cluster.registerCustomer("burst");
	const checkout = (i: number) =>
		cluster
			.http("POST", "/api/v1/orders", {
				token: customer.accessToken,
				headers: { "idempotency-key": `burst-${i}` },
				// tok_slow answers after 2 s: every checkout of the burst is still in flight when SIGTERM comes.
				body: { shippingAddress: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, shippingMethod: "standard", paymentToken: "tok_slow", items: [{ productId: DEMO_PRODUCTS[i % 5].id, quantity: 1 }] },
			})
			.then(
				r => (r.status === 201 || r.status === 202 ? r.status : `${r.status} ${r.body?.type}: ${r.body?.message}`),
				(err: Error) => `error: ${err.message}`,
			);
	const burst = Array.from({ length: 16 }, (_, i) => checkout(i));
	// "Sent" means the gateway took it: wait until all 16 run there (a fixed pause is not enough on a loaded machine).
	await cluster.waitUntil(async () => (await gauge("gateway", "node_running_contexts")) >= 16, 15_000, "the whole burst running on the gateway");

	const t0 = Date.now();
	const exited = cluster.kill("gateway", "SIGTERM").then(() => Date.now() - t0);
	await new Promise(r => setTimeout(r, 100));
	// After SIGTERM the gateway takes nothing new.
	const late = await cluster.http("GET", "/api/v1/products").then(
		r => r.status,
		() => "refused",
	);
	expect([503, "refused"]).toContain(late);

	// Everything sent before SIGTERM got its real answer: the order (201, or 202 still running).
	const statuses = await Promise.all(burst);
	expect(statuses.filter(s => s !== 201 && s !== 202)).toEqual([]);
	const stopMs = await exited;
	expect(stopMs).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
	expect(cluster.logs("gateway")).not.toMatch(/GracefulStopTimeoutError|graceful stop timeout/i);
});
