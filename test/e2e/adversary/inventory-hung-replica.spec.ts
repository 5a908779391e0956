/**
 * Two inventory replicas; one hangs — it takes every call and answers none (lib/faults.ts `hang:*`:
 * handlers stuck on a lock; the process keeps its heartbeats, so the registry never drops it) —
 * for 26 s while 24 clients check out without pause. Then it is released and its held calls run,
 * late.
 *
 * What it shows:
 *  - a saga call that timed out on a node makes this node's sagas route that action around it for
 *    10 s, then probe it with one call (mixins/saga.mixin.ts routeFor): after the first wave of
 *    step timeouts (3 s each) only one probe per action and 10 s reaches the hung replica. Before,
 *    the round robin kept sending every other step call (retries included) to it;
 *  - the saga's step timeouts also count against the hung replica's breakers, for every other
 *    caller's sake: each step is called with the time its callee declares (lib/command-timeouts.ts,
 *    lib/graceful.ts `notTheCalleesFault`), and the breaker's window is 10 s;
 *  - every checkout ends CONFIRMED, and when the held calls run late the invariants 1–5 of
 *    DOMAIN.md hold (each late step answers from its idempotency record).
 * On the tree before this (4c26a07, with the hang: fault point added) the same run placed 287
 * checkouts, 19 REJECTED, and checkouts kept taking 3 s and more to the end of the hang.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHOP_NODES, TestCluster } from "../support/harness";
import { ADDRESS, FAULT_ENV, checkInvariants, checkoutWithRetries, log, shopReady, stockInFirstWarehouse, untilTerminal } from "./support";

jest.setTimeout(300_000);

const INVENTORY = SHOP_NODES.find(n => n.name === "inventory")!;
/** Only the second replica reads this fault file. */
const FAULTS = join(mkdtempSync(join(tmpdir(), "mc-hung-")), "inventory-b.faults");
writeFileSync(FAULTS, "");
const cluster = new TestCluster([...SHOP_NODES, { name: "inventory-b", services: INVENTORY.services, env: { TEST_FAULTS_FILE: FAULTS } }], FAULT_ENV);
const CLIENTS = 24;
const WARM_MS = 3000;
const HANG_MS = 26_000;
/** From here to the end of the hang the replica must be isolated (by the saga's routing within a step timeout, 3 s; by the breakers within their 10 s window, a step timeout and 10 failures), with margin. */
const ISOLATED_FROM_MS = 17_000;

let admin: string;
let products: { id: string; sku: string }[];
let stockBefore: Record<string, any[]>;
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

beforeAll(async () => {
	await cluster.start();
	({ admin, products } = await shopReady(cluster, 4));
	await cluster.waitStarted("inventory-b");
	stockBefore = await stockInFirstWarehouse(cluster, admin, products, 10_000);
}, 180_000);

afterAll(() => cluster.stop());

const percentile = (xs: number[], p: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] : NaN);

it("a hung inventory replica beside a healthy one: after the first step timeouts the sagas go to the healthy one, every order CONFIRMED", async () => {
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
	// Isolated: only probes (one call per action and 10 s) reach it in the last 9 s.
	expect(late.length).toBeLessThanOrEqual(8);
	expect(during.length).toBeGreaterThanOrEqual(30);
	expect(summary.isolated.p50).toBeLessThan(2000);

	const inv = await checkInvariants(cluster, admin, stockBefore);
	log("invariants", inv);
	expect(inv.violations).toEqual([]);
});
