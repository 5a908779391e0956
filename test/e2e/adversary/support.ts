/**
 * Adversary helpers: a private nats-server (restartable), a retrying checkout client, and a check of
 * DOMAIN.md's invariants 1–5 read from the services' own answers (admin API) and the saga table.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestCluster } from "../support/harness";
import { freePort } from "../../support/ports";

export const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };

/** Limits out of the way of bursts, and sagas that resume and retry within seconds after a fault. */
export const FAULT_ENV = { AUTH_RATE_LIMIT_MAX: "10000", RATE_LIMIT_MAX: "1000000", SAGA_RECOVER_MS: "300", SAGA_STUCK_RETRY_BASE_MS: "500", SAGA_STUCK_RETRY_MAX_MS: "2000" };

/** One line of the adversary's own log on stdout. */
export const log = (...a: unknown[]) => process.stdout.write(`[adv] ${a.map(x => (typeof x === "string" ? x : JSON.stringify(x))).join(" ")}\n`);

/**
 * Waits until the shop can sell and every service an invariant check reads answers (catalog,
 * identity, warehouse, orders, payments, fulfillment). Returns the admin's token and the first
 * `n` demo products.
 */
export async function shopReady(cluster: TestCluster, n = 1, timeoutMs = 60_000): Promise<{ admin: string; products: { id: string; sku: string }[] }> {
	const admin = await cluster.waitForShop(timeoutMs);
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/payments", { token: admin })).status === 200, timeoutMs, "payments");
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/fulfillments", { token: admin })).status === 200, timeoutMs, "fulfillment");
	const products = (await cluster.http("GET", `/api/v1/products?pageSize=${n}`)).body.items;
	return { admin, products };
}


/** A nats-server with JetStream on a free port and its own store dir, which can be stopped and started again on the same port. */
export class OwnNats {
	port = 0;
	readonly dir = mkdtempSync(join(tmpdir(), "mc-adv-nats-"));
	private child: ChildProcess | null = null;
	get url() {
		return `nats://127.0.0.1:${this.port}`;
	}
	async start(): Promise<void> {
		if (!this.port) this.port = await freePort();
		this.child = spawn("nats-server", ["-js", "-a", "127.0.0.1", "-p", String(this.port), "-sd", this.dir], { stdio: "ignore" });
		const deadline = Date.now() + 10_000;
		for (;;) {
			const ok = await new Promise<boolean>(resolve => {
				const sock = require("node:net").connect(this.port, "127.0.0.1");
				sock.once("connect", () => (sock.destroy(), resolve(true)));
				sock.once("error", () => resolve(false));
			});
			if (ok) return;
			if (Date.now() > deadline) throw new Error("nats-server did not start");
			await new Promise(r => setTimeout(r, 100));
		}
	}
	async stop(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
		const c = this.child;
		if (!c || c.exitCode !== null) return;
		const exited = new Promise(r => c.once("exit", r));
		c.kill(signal);
		await exited;
		this.child = null;
	}
}

export interface Attempt {
	status: number | "ERR";
	ms: number;
	/** A server error's answer (type and message), to say what it was. */
	error?: string;
}

export interface CheckoutOutcome {
	key: string;
	token: string;
	attempts: Attempt[];
	order: any | null;
}

/**
 * A client that checks out with an Idempotency-Key and retries the same key after errors (network
 * error, 409 in flight, 429, 5xx) until it has an order: the first 201 or 202 answer ends it, and
 * `order` is that answer as sent (a 202's order is still PENDING; `untilTerminal` follows it, and
 * checkInvariants waits for every order to end). Another 4xx ends it without an order.
 */
export async function checkoutWithRetries(cluster: TestCluster, token: string, key: string, body: unknown, deadlineMs = 120_000): Promise<CheckoutOutcome> {
	const out: CheckoutOutcome = { key, token, attempts: [], order: null };
	const end = Date.now() + deadlineMs;
	while (Date.now() < end) {
		const t0 = Date.now();
		try {
			const res = await cluster.http("POST", "/api/v1/orders", { token, body, headers: { "idempotency-key": key } });
			out.attempts.push({ status: res.status, ms: res.ms, ...(res.status >= 500 ? { error: `${(res.body as any)?.type}: ${(res.body as any)?.message}` } : {}) });
			if (res.status === 201 || res.status === 202) {
				out.order = res.body;
				break;
			}
			if (res.status >= 400 && res.status < 500 && res.status !== 409 && res.status !== 429) break;
		} catch {
			out.attempts.push({ status: "ERR", ms: Date.now() - t0 });
		}
		await new Promise(r => setTimeout(r, 300 + Math.random() * 400));
	}
	return out;
}

/**
 * Puts `onHand` units of each product in its first warehouse and none in the others (as the admin),
 * and returns each SKU's warehouses as they are then: the `stockBefore` checkInvariants compares with.
 */
export async function stockInFirstWarehouse(cluster: TestCluster, admin: string, products: { sku: string }[], onHand: number): Promise<Record<string, any[]>> {
	const before: Record<string, any[]> = {};
	for (const p of products) {
		const ws = (await cluster.http("GET", `/api/v1/admin/inventory/${p.sku}`, { token: admin })).body.warehouses;
		for (const [i, w] of ws.entries()) {
			const r = await cluster.http("PUT", `/api/v1/admin/inventory/${p.sku}`, { token: admin, body: { warehouseId: w.warehouseId, onHand: i === 0 ? onHand : 0 } });
			if (r.status !== 200) throw new Error(`PUT stock of ${p.sku}: ${r.status} ${JSON.stringify(r.body)}`);
		}
		before[p.sku] = (await cluster.http("GET", `/api/v1/admin/inventory/${p.sku}`, { token: admin })).body.warehouses;
	}
	return before;
}

/** Follows an order with GET until it leaves PENDING (or `deadlineMs` passes): the order as last read. */
export async function untilTerminal(cluster: TestCluster, token: string, order: any, deadlineMs = 120_000): Promise<any> {
	const end = Date.now() + deadlineMs;
	while (order?.status === "PENDING" && Date.now() < end) {
		await new Promise(r => setTimeout(r, 100));
		const res = await cluster.http("GET", `/api/v1/orders/${order.id}`, { token });
		if (res.status === 200) order = res.body;
	}
	return order;
}

export async function allPages(cluster: TestCluster, path: string, token: string): Promise<any[]> {
	const items: any[] = [];
	for (let page = 1; ; page++) {
		const sep = path.includes("?") ? "&" : "?";
		const res = await cluster.http("GET", `${path}${sep}page=${page}&pageSize=100`, { token });
		if (res.status !== 200) throw new Error(`GET ${path} → ${res.status} ${JSON.stringify(res.body)}`);
		items.push(...res.body.items);
		if (items.length >= res.body.total || res.body.items.length === 0) return items;
	}
}

const TERMINAL = ["CONFIRMED", "REJECTED", "CANCELLED", "SHIPPED", "DELIVERED"];
const LIVE = ["CONFIRMED", "SHIPPED", "DELIVERED"];

export interface InvariantReport {
	orders: number;
	byStatus: Record<string, number>;
	violations: string[];
}

/**
 * Waits (up to `waitMs`) for every order and saga to be terminal, then checks invariants 1–5:
 * stock (`onHand ≥ reserved ≥ 0`, nothing reserved once no order is open, onHand down by exactly the
 * live quantity since `stockBefore`), money per order, no AUTHORIZED payment on a terminal order,
 * one payment per order, one order per (customer, key).
 */
export async function checkInvariants(cluster: TestCluster, admin: string, skus: Record<string, any[]>, waitMs = 120_000): Promise<InvariantReport> {
	const violations: string[] = [];
	let orders: any[] = [];
	try {
		await cluster.waitUntil(async () => {
			orders = await allPages(cluster, "/api/v1/admin/orders", admin);
			const sagas = await cluster.query("orders", "SELECT id FROM saga_instances WHERE status NOT IN ('COMPLETED', 'COMPENSATED')");
			return orders.every(o => TERMINAL.includes(o.status)) && sagas.length === 0;
		}, waitMs, "every order and saga terminal");
	} catch {
		const open = orders.filter(o => !TERMINAL.includes(o.status)).map(o => `${o.id}:${o.status}`);
		const sagas = await cluster.query("orders", "SELECT id, status FROM saga_instances WHERE status NOT IN ('COMPLETED', 'COMPENSATED')");
		violations.push(`not terminal after ${waitMs} ms: orders ${JSON.stringify(open)} sagas ${JSON.stringify(sagas)}`);
	}
	const byStatus: Record<string, number> = {};
	for (const o of orders) {
		const k = o.failureReason ? `${o.status}:${o.failureReason}` : o.status;
		byStatus[k] = (byStatus[k] ?? 0) + 1;
	}

	// Invariant 3 per order.
	const payments = await allPages(cluster, "/api/v1/admin/payments", admin);
	const payByOrder = new Map<string, any[]>();
	for (const p of payments) payByOrder.set(p.orderId, [...(payByOrder.get(p.orderId) ?? []), p]);
	for (const o of orders) {
		const ps = payByOrder.get(o.id) ?? [];
		if (ps.length > 1) violations.push(`order ${o.id} (${o.status}) has ${ps.length} payments`);
		const net = ps.reduce((n, p) => n + p.captured.amount - p.refunded.amount, 0);
		const expected = LIVE.includes(o.status) ? o.total.amount - (o.refundedTotal?.amount ?? 0) : 0;
		if (net !== expected) violations.push(`order ${o.id} (${o.status}) captured−refunded ${net} ≠ ${expected}`);
		if (TERMINAL.includes(o.status) && ps.some(p => p.status === "AUTHORIZED")) violations.push(`order ${o.id} (${o.status}) has an open authorization`);
	}
	for (const [orderId, ps] of payByOrder) if (!orders.some(o => o.id === orderId)) violations.push(`payments ${ps.map(p => p.id)} for unknown order ${orderId}`);

	// Invariants 1, 2.
	for (const [sku, before] of Object.entries(skus)) {
		// Read until the warehouse answers: right after a node's pause or restart the gateway may still
		// answer 503/504 for it, which is not a stock figure.
		let after: any[] = [];
		await cluster.waitUntil(async () => {
			const res = await cluster.http("GET", `/api/v1/admin/inventory/${sku}`, { token: admin });
			if (res.status !== 200) process.stdout.write(`[adv] stock of ${sku}: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}\n`);
			after = res.status === 200 ? res.body.warehouses : undefined;
			return Array.isArray(after);
		}, 60_000, `the stock of ${sku}`);
		for (const w of after) if (!(w.onHand >= w.reserved && w.reserved >= 0)) violations.push(`${sku}@${w.warehouseId} onHand ${w.onHand} reserved ${w.reserved}`);
		const reserved = after.reduce((n, w) => n + w.reserved, 0);
		const open = orders.some(o => !TERMINAL.includes(o.status));
		if (!open && reserved !== before.reduce((n, w) => n + w.reserved, 0)) violations.push(`${sku} reserved ${reserved} with no open order`);
		const live = orders.filter(o => LIVE.includes(o.status)).reduce((n, o) => n + o.items.filter((i: any) => i.sku === sku).reduce((m: number, i: any) => m + i.quantity, 0), 0);
		const drop = before.reduce((n, w) => n + w.onHand, 0) - after.reduce((n, w) => n + w.onHand, 0);
		if (drop !== live) violations.push(`${sku} onHand dropped ${drop} but live orders hold ${live}`);
	}
	return { orders: orders.length, byStatus, violations };
}

/** Invariant 5 from the client's side: each customer's orders, counted per key used (one order per key at most). */
export async function ordersPerCustomer(cluster: TestCluster, token: string): Promise<number> {
	return (await cluster.http("GET", "/api/v1/orders?pageSize=100", { token })).body.total;
}

export function tally(outcomes: CheckoutOutcome[]): Record<string, number> {
	const t: Record<string, number> = {};
	for (const o of outcomes) for (const a of o.attempts) t[String(a.status)] = (t[String(a.status)] ?? 0) + 1;
	return t;
}
