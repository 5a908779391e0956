/**
 * ADVERSARY: the inventory node is SIGKILLed and stays away past its heartbeat timeout, then comes
 * back. Checkouts placed right after the kill (node still registered: calls time out) and after the
 * node was removed. Records how long each takes to reach an end, then respawns inventory and checks
 * every order terminal, authorizations not left open (DOMAIN.md invariants 3, 4, 5).
 * Observed (06:30 run): see the [gone] lines.
 */
import { SHOP_NODES, TestCluster } from "../support/harness";

jest.setTimeout(300_000);
const cluster = new TestCluster(SHOP_NODES, { AUTH_RATE_LIMIT_MAX: "10000", RATE_LIMIT_MAX: "1000000" });
const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
let admin: string;
const log = (s: string) => process.stdout.write(`[gone] ${s}\n`);

beforeAll(async () => {
	await cluster.start();
	admin = await cluster.waitForShop();
});
afterAll(() => cluster.stop());

it("checkouts while inventory is gone end terminal in bounded time; after it is back nothing stays PENDING or authorized", async () => {
	const product = (await cluster.http("GET", "/api/v1/products?category=headphones&pageSize=1")).body.items[0];
	const customers = await Promise.all(Array.from({ length: 6 }, (_, i) => cluster.registerCustomer(`gone${i}-${Math.random().toString(36).slice(2, 6)}`)));
	const body = { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: product.id, quantity: 1 }] };
	const post = async (customer: any, key: string) => {
		const t = Date.now();
		const answer = await cluster.http("POST", "/api/v1/orders", { token: customer.accessToken, body, headers: { "idempotency-key": key } });
		log(`${key} first ${answer.status} after ${Date.now() - t} ms ${answer.body?.status ?? ""} ${answer.body?.failureReason ?? answer.body?.code ?? ""}`);
		return { customer, key, t, answer };
	};
	const end = async (r: { customer: any; key: string; t: number; answer: any }, ms: number) => {
		if (r.answer.status !== 201 && r.answer.status !== 202) return null;
		let order = r.answer.body;
		const deadline = Date.now() + ms;
		while (order.status === "PENDING" && Date.now() < deadline) {
			await new Promise(res => setTimeout(res, 250));
			const res = await cluster.http("GET", `/api/v1/orders/${r.answer.body.id}`, { token: r.customer.accessToken });
			if (res.status === 200) order = res.body;
		}
		log(`${r.key} ${order.status} ${order.failureReason ?? ""} at ${Date.now() - r.t} ms`);
		return order;
	};

	await cluster.kill("inventory");
	log("killed inventory");
	const early = await Promise.all(customers.slice(0, 3).map((c, i) => post(c, `gone-early-${i}`)));
	await new Promise(r => setTimeout(r, 14_000));
	const late = await Promise.all(customers.slice(3).map((c, i) => post(c, `gone-late-${i}`)));
	const lateEnds = await Promise.all(late.map(r => end(r, 40_000)));
	const earlyEnds = await Promise.all(early.map(r => end(r, 1_000)));
	log(`respawning inventory`);
	await cluster.respawn("inventory");
	const all = [...early, ...late];
	const finals = await Promise.all(all.map(r => end(r, 90_000)));
	for (const [i, order] of finals.entries()) {
		if (!order) continue;
		const pays = (await cluster.http("GET", `/api/v1/admin/payments?orderId=${order.id}`, { token: admin })).body.items;
		log(`${all[i].key} final ${order.status}; payments ${JSON.stringify(pays.map((p: any) => ({ status: p.status, captured: p.captured?.amount, refunded: p.refunded?.amount })))}`);
		expect(["REJECTED", "CONFIRMED"]).toContain(order.status);
		if (order.status === "REJECTED") for (const p of pays) expect(p.status).not.toBe("AUTHORIZED");
	}
	await cluster.waitUntil(async () => (await cluster.query("orders", "SELECT id FROM saga_instances WHERE status NOT IN ('COMPLETED', 'COMPENSATED')")).length === 0, 90_000, "every saga terminal");
	void lateEnds; void earlyEnds;
});
