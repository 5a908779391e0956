/**
 * Two inventory replicas; one hangs — it takes every call and answers none (lib/faults.ts `hang:*`:
 * handlers stuck on a lock; the process keeps its heartbeats, so the registry never drops it) —
 * for 26 s while 24 clients check out without pause. Then it is released and its held calls run,
 * late.
 *
 * What it shows (lib/command-timeouts.ts, moleculer.config.ts circuitBreaker):
 *  - the checkout saga's own step calls count against the hung replica's breakers: each step is
 *    called with the time its callee declares, so a timeout there is the callee's fault
 *    (lib/graceful.ts `notTheCalleesFault`). Before, the saga called with 3–5 s against an
 *    undeclared 10 s, none of its timeouts counted, and every other step call went to the hung
 *    replica for as long as it hung;
 *  - the breaker's window is 10 s, so a replica that was busy before it hung is isolated within
 *    about 10 s plus a step timeout (with Moleculer's fixed 60 s window it needed as many timeouts
 *    as it had answered in the minute before);
 *  - past that, only the half-open probes (one call per action every 10 s) reach it: in the last
 *    9 s of the hang the saga logs a handful of step timeouts, and checkouts take their usual time;
 *  - every checkout ends CONFIRMED, and when the held calls run late the invariants 1–5 of
 *    DOMAIN.md hold (each late step answers from its idempotency record).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHOP_NODES, TestCluster } from "../support/harness";
import { ADDRESS, FAULT_ENV, checkInvariants, checkoutWithRetries, log, shopReady, untilTerminal } from "./support";

jest.setTimeout(300_000);

const INVENTORY = SHOP_NODES.find(n => n.name === "inventory")!;
/** Only the second replica reads this fault file. */
const FAULTS = join(mkdtempSync(join(tmpdir(), "mc-hung-")), "inventory-b.faults");
writeFileSync(FAULTS, "");
const cluster = new TestCluster([...SHOP_NODES, { name: "inventory-b", services: INVENTORY.services, env: { TEST_FAULTS_FILE: FAULTS } }], FAULT_ENV);
const CLIENTS = 24;
const WARM_MS = 3000;
const HANG_MS = 26_000;
/** From here to the end of the hang the replica must be isolated: the 10 s window, a step timeout (3 s) and 10 failures to count, and margin. */
const ISOLATED_FROM_MS = 17_000;

let admin: string;
let products: { id: string; sku: string }[];
const stockBefore: Record<string, any[]> = {};
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

beforeAll(async () => {
	await cluster.start();
	({ admin, products } = await shopReady(cluster, 4));
	await cluster.waitStarted("inventory-b");
	for (const p of products) {
		const ws = (await cluster.http("GET", `/api/v1/admin/inventory/${p.sku}`, { token: admin })).body.warehouses;
		for (const [i, w] of ws.entries()) {
			const r = await cluster.http("PUT", `/api/v1/admin/inventory/${p.sku}`, { token: admin, body: { warehouseId: w.warehouseId, onHand: i === 0 ? 10_000 : 0 } });
			expect(r.status).toBe(200);
		}
		stockBefore[p.sku] = (await cluster.http("GET", `/api/v1/admin/inventory/${p.sku}`, { token: admin })).body.warehouses;
	}
}, 180_000);

afterAll(() => cluster.stop());

const percentile = (xs: number[], p: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] : NaN);

it("a hung inventory replica beside a healthy one: the saga's timeouts open its breakers, checkouts go to the healthy one, every order CONFIRMED", async () => {
	const customers = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => cluster.registerCustomer(`hung${i}-${Math.random().toString(36).slice(2, 6)}`)));
	const done: { at: number; ms: number; status: string }[] = [];
	let hungAt = Number.POSITIVE_INFINITY;
	let stop = false;
	const client = async (c: number) => {
		for (let n = 0; !stop; n++) {
			const started = Date.now();
			const p = products[(c + n) % products.length];
			const body = { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: p.id, quantity: 1 }] };
			const out = await checkoutWithRetries(cluster, customers[c].accessToken, `hung-${c}-${n}`, body);
			const order = await untilTerminal(cluster, customers[c].accessToken, out.order);
			done.push({ at: started - hungAt, ms: Date.now() - started, status: `${order?.status ?? "none"}${order?.failureReason ? ` ${order.failureReason}` : ""}` });
		}
	};
	const clients = customers.map((_, c) => client(c));
	await sleep(WARM_MS);
	writeFileSync(FAULTS, "hang:*");
	hungAt = Date.now();
	log("inventory-b hangs");
	await sleep(HANG_MS);
	writeFileSync(FAULTS, "");
	log("inventory-b released");
	await sleep(2000);
	stop = true;
	await Promise.all(clients);

	// The saga's step timeouts, by second since the hang began (orders' own log).
	const timeouts = (await cluster.query("orders", "SELECT step, phase, at FROM saga_log WHERE detail->>'type' = 'REQUEST_TIMEOUT'")).map(r => ({ ...r, t: new Date(r.at).getTime() - hungAt }));
	const bySecond: Record<number, number> = {};
	for (const t of timeouts) bySecond[Math.floor(t.t / 1000)] = (bySecond[Math.floor(t.t / 1000)] ?? 0) + 1;
	const late = timeouts.filter(t => t.t >= ISOLATED_FROM_MS && t.t < HANG_MS);
	const during = done.filter(d => d.at >= ISOLATED_FROM_MS && d.at + d.ms < HANG_MS);
	const early = done.filter(d => d.at >= 0 && d.at < 6000);
	const summary = {
		checkouts: done.length,
		statuses: done.reduce<Record<string, number>>((m, d) => ({ ...m, [d.status]: (m[d.status] ?? 0) + 1 }), {}),
		stepTimeoutsBySecond: bySecond,
		lateStepTimeouts: late.map(t => `${t.step}/${t.phase}@${t.t}`),
		firstSixSeconds: { n: early.length, p50: percentile(early.map(d => d.ms), 50) },
		isolated: { n: during.length, p50: percentile(during.map(d => d.ms), 50), p90: percentile(during.map(d => d.ms), 90) },
	};
	log("hung replica", summary);

	expect(done.filter(d => !d.status.startsWith("CONFIRMED"))).toEqual([]);
	// The hang was felt: the saga timed out on it before its breakers opened.
	expect(timeouts.filter(t => t.t >= 0 && t.t < ISOLATED_FROM_MS).length).toBeGreaterThanOrEqual(5);
	// Isolated: only half-open probes (one call per action and 10 s) reach it in the last 9 s.
	expect(late.length).toBeLessThanOrEqual(8);
	expect(during.length).toBeGreaterThanOrEqual(30);
	expect(summary.isolated.p50).toBeLessThan(2000);

	const inv = await checkInvariants(cluster, admin, stockBefore);
	log("invariants", inv);
	expect(inv.violations).toEqual([]);
});
