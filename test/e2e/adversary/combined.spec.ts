/**
 * Adversary, combined faults: two commerce nodes (orders drivers), a private nats-server. A burst
 * of checkouts while one driver is SIGSTOPped past its saga lease (the other takes over), the bus is
 * restarted while it is still paused, and customers cancel their confirmed orders as they come in.
 * Afterwards DOMAIN.md invariants 1–5 hold.
 */
import { SHOP_NODES, TestCluster } from "../support/harness";
import { ADDRESS, FAULT_ENV, OwnNats, checkInvariants, checkoutWithRetries, log, shopReady, tally } from "./support";

jest.setTimeout(600_000);

const nats = new OwnNats();
let cluster: TestCluster;
let admin: string;
const customers: { accessToken: string }[] = [];
let A: { id: string; sku: string };
const stockBefore: Record<string, any[]> = {};

beforeAll(async () => {
	await nats.start();
	cluster = new TestCluster(
		// Two orders drivers: the shop's topology with its commerce node twice.
		[...SHOP_NODES.filter(n => n.name !== "commerce"), ...["commerce-a", "commerce-b"].map(name => ({ name, services: ["cart", "orders", "payments"] }))],
		{ ...FAULT_ENV, TRANSPORTER: nats.url, REQUEST_TIMEOUT_MS: "3000", SAGA_LEASE_MS: "2000", SAGA_COMPENSATION_ATTEMPTS: "3", CHECKOUT_WAIT_MS: "2000" },
	);
	await cluster.start();
	({ admin, products: [A] } = await shopReady(cluster));
	const ws = (await cluster.http("GET", `/api/v1/admin/inventory/${A.sku}`, { token: admin })).body.warehouses;
	expect((await cluster.http("PUT", `/api/v1/admin/inventory/${A.sku}`, { token: admin, body: { warehouseId: ws[0].warehouseId, onHand: 40 } })).status).toBe(200);
	stockBefore[A.sku] = (await cluster.http("GET", `/api/v1/admin/inventory/${A.sku}`, { token: admin })).body.warehouses;
	for (let i = 0; i < 10; i++) customers.push(await cluster.registerCustomer());
}, 300_000);

afterAll(async () => {
	for (const n of ["commerce-a", "commerce-b"]) cluster?.signal(n, "SIGCONT");
	await cluster?.stop();
	await nats.stop();
});

it("driver paused past its lease + NATS restarted + customers cancelling, during a burst of 60", async () => {
	const body = (i: number) => ({ shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: A.id, quantity: 1 + (i % 2) }] });
	const cancels: (number | string)[] = [];
	const running = Promise.all(
		Array.from({ length: 60 }, async (_, i) => {
			const c = customers[i % 10];
			const out = await checkoutWithRetries(cluster, c.accessToken, `combo-${i}`, body(i));
			// Every third customer cancels at once, retrying while the cluster is disturbed.
			if (out.order && i % 3 === 0) {
				for (let t = 0; t < 40; t++) {
					const r = await cluster.http("POST", `/api/v1/orders/${out.order.id}/cancel`, { token: c.accessToken }).catch(() => ({ status: "ERR", body: null as any }));
					const done = r.status === 200 || (r.status === 409 && r.body?.type === "NOT_CANCELLABLE" && /REJECTED|CANCELLED/.test(r.body?.message ?? ""));
					if (done || t === 39) cancels.push(`${r.status}${r.body?.type ? ` ${r.body.type}` : ""}`);
					if (done) break;
					await new Promise(res => setTimeout(res, 500));
				}
			}
			return out;
		}),
	);
	await new Promise(r => setTimeout(r, 500));
	cluster.signal("commerce-a", "SIGSTOP");
	log("commerce-a stopped");
	await new Promise(r => setTimeout(r, 2500));
	await nats.stop("SIGKILL");
	log("nats killed");
	await new Promise(r => setTimeout(r, 2000));
	await nats.start();
	log("nats restarted");
	await new Promise(r => setTimeout(r, 2000));
	cluster.signal("commerce-a", "SIGCONT");
	log("commerce-a continued");
	const outcomes = await running;
	const inv = await checkInvariants(cluster, admin, stockBefore);
	const tallyCancels: Record<string, number> = {};
	for (const c of cancels) tallyCancels[c] = (tallyCancels[c] ?? 0) + 1;
	log("combo", { attempts: tally(outcomes), noOrder: outcomes.filter(o => !o.order).map(o => o.key), cancels: tallyCancels, ...inv });
	expect(outcomes.filter(o => !o.order)).toEqual([]);
	expect(inv.violations).toEqual([]);
});
