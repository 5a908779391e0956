/**
 * The whole platform for hostile-input tests, on SQLite (every service in one broker, as
 * `npm start` runs it) or on PostgreSQL in cluster form (a gateway broker and a services broker
 * over NATS, so params, errors and the circuit breaker cross a real transporter), with a raw HTTP
 * client that sends exactly the bytes and headers a test gives it.
 */
import { request as httpRequest } from "node:http";
import type { ServiceBroker } from "moleculer";
import { TEST_ADMIN, useTestEnv } from "../../support/env";
import { PG_URL, deleteStreams, dropDatabases, pgPrefix } from "../events/helpers";

export const NATS_URL = "nats://127.0.0.1:4222";

export interface Answer {
	status: number;
	headers: Record<string, string | string[] | undefined>;
	body: any;
	text: string;
}

export interface SendOptions {
	token?: string;
	/** JSON-encoded unless a string or Buffer (sent as is). */
	body?: unknown;
	headers?: Record<string, string>;
	/** The client address the trusted proxy reports (X-Forwarded-For). */
	from?: string;
}

export type Send = (method: string, path: string, opts?: SendOptions) => Promise<Answer>;

export interface Platform {
	db: "SQLite" | "PostgreSQL";
	brokers: ServiceBroker[];
	send: Send;
	port: number;
	stop(): Promise<void>;
}

/** The environment every platform of these tests shares (the gateway reads it once per test file). */
export const HOSTILE_ENV = {
	SEED_DEMO: "true",
	// The tests name their client addresses through a trusted proxy on the loopback.
	TRUST_PROXY: "loopback",
	RATE_LIMIT_MAX: "100000",
	AUTH_RATE_LIMIT_MAX: "1000",
	CHECKOUT_WAIT_MS: "8000",
};

export async function startPlatform(db: "SQLite" | "PostgreSQL", extra: Record<string, string> = {}): Promise<Platform> {
	const namespace = `hostile-${Math.random().toString(36).slice(2, 8)}`;
	const prefix = pgPrefix("hostile");
	const env: Record<string, string> = db === "PostgreSQL" ? { ...HOSTILE_ENV, DATABASE_URL: PG_URL, DB_NAME_PREFIX: prefix, TRANSPORTER: NATS_URL, NAMESPACE: namespace, ...extra } : { ...HOSTILE_ENV, NAMESPACE: namespace, ...extra };
	useTestEnv(env);
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	const { availableServices } = require("../../../services") as typeof import("../../../services");
	const brokers =
		db === "PostgreSQL"
			? [
					createBroker(["api"], { logger: false, nodeID: `${namespace}-gateway` }),
					createBroker(
						availableServices().filter(s => s !== "api"),
						{ logger: false, nodeID: `${namespace}-services` },
					),
				]
			: [createBroker(undefined, { logger: false, nodeID: `${namespace}-embedded` })];
	await Promise.all(brokers.map(b => b.start()));
	await brokers[0].waitForServices(availableServices().filter(s => s !== "api"), 30_000);
	const port = (brokers[0].getLocalService("api") as any).server.address().port;
	return {
		db,
		brokers,
		port,
		send: sender(port),
		async stop() {
			await Promise.all(brokers.map(b => b.stop()));
			if (db === "PostgreSQL") {
				await dropDatabases(prefix);
				await deleteStreams(NATS_URL, namespace).catch(() => undefined);
			}
		},
	};
}

/** An HTTP client that sends the path and bytes unchanged (fetch would normalise or re-encode them). */
export function sender(port: number): Send {
	return (method, path, opts = {}) =>
		new Promise((resolve, reject) => {
			const headers: Record<string, string> = { ...opts.headers };
			if (opts.token) headers.authorization = `Bearer ${opts.token}`;
			if (opts.from) headers["x-forwarded-for"] = opts.from;
			let payload: Buffer | undefined;
			if (opts.body !== undefined) {
				payload = Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body));
				headers["content-type"] ??= "application/json";
				headers["content-length"] ??= String(payload.length);
			}
			const req = httpRequest({ host: "127.0.0.1", port, method, path: path.startsWith("/api") || path.startsWith("/health") ? path : `/api/v1${path}`, headers }, res => {
				const chunks: Buffer[] = [];
				res.on("data", c => chunks.push(c));
				res.on("end", () => {
					const text = Buffer.concat(chunks).toString("utf8");
					let body: any = text;
					try {
						body = text ? JSON.parse(text) : null;
					} catch {
						// not JSON (the docs page)
					}
					resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text });
				});
			});
			req.on("error", reject);
			req.end(payload);
		});
}

/** The error shape of API.md, with the status it came with. */
export function errorShape(status: number, type?: string) {
	return { name: expect.any(String), message: expect.any(String), code: status, type: type ?? expect.stringMatching(/^[A-Z][A-Z0-9_]*$/) };
}

export async function login(send: Send, email: string, password: string, from?: string): Promise<string> {
	const r = await send("POST", "/auth/login", { body: { email, password }, from });
	if (r.status !== 200) throw new Error(`login ${email}: ${r.status} ${r.text}`);
	return r.body.accessToken;
}

export const adminLogin = (send: Send, from?: string) => login(send, TEST_ADMIN.email, TEST_ADMIN.password, from);

export async function register(send: Send, email: string, password = "customer-password-1", from?: string): Promise<{ token: string; id: string }> {
	const r = await send("POST", "/auth/register", { body: { email, password, firstName: "Test", lastName: "Customer" }, from });
	if (r.status !== 201) throw new Error(`register ${email}: ${r.status} ${r.text}`);
	return { token: r.body.accessToken, id: r.body.customer.id };
}

/** A product of the platform's first category, with stock in wh-east. */
export async function product(send: Send, admin: string, sku: string, priceCents: number, stock = 100): Promise<{ id: string; sku: string }> {
	const categories = (await send("GET", "/categories")).body.items;
	const r = await send("POST", "/products", { token: admin, body: { sku, name: `Product ${sku}`, description: "", brand: "Testbrand", categoryId: categories[0].id, price: { amount: priceCents, currency: "USD" } } });
	if (r.status !== 201) throw new Error(`product ${sku}: ${r.status} ${r.text}`);
	const s = await send("PUT", `/admin/inventory/${encodeURIComponent(sku)}`, { token: admin, body: { warehouseId: "wh-east", onHand: stock } });
	if (s.status !== 200) throw new Error(`stock ${sku}: ${s.status} ${s.text}`);
	return { id: r.body.id, sku };
}

export const ADDRESS = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };

let keys = 0;
export function checkout(send: Send, token: string, items: { productId: string; quantity: number }[], opts: { key?: string; from?: string } = {}) {
	return send("POST", "/orders", { token, from: opts.from, headers: { "idempotency-key": opts.key ?? `k-${process.pid}-${++keys}-${Math.random()}` }, body: { shippingAddress: ADDRESS, shippingMethod: "standard", paymentToken: "tok_visa", items } });
}

/** Rows per table of every service's database: "nothing written" means this does not change. */
export async function rowCounts(platform: Platform, skip: RegExp = /^(schema_migrations|SequelizeMeta)$/): Promise<Record<string, number>> {
	const counts: Record<string, number> = {};
	for (const broker of platform.brokers) {
		for (const svc of broker.services as any[]) {
			if (!svc.sequelize) continue;
			const tables: any[] = await svc.sequelize.getQueryInterface().showAllTables();
			for (const t of tables.map(x => (typeof x === "string" ? x : x.tableName))) {
				if (skip.test(t)) continue;
				const [rows]: any = await svc.sequelize.query(`SELECT COUNT(*) AS n FROM "${t}"`);
				counts[`${svc.name}.${t}`] = Number(rows[0].n);
			}
		}
	}
	return counts;
}

/**
 * Row counts once the platform is quiet: events of earlier requests (outbox, inboxes, read models)
 * may still be landing, so two equal snapshots in a row are taken as the state.
 */
export async function settledRowCounts(platform: Platform): Promise<Record<string, number>> {
	let last = await rowCounts(platform);
	for (let i = 0; i < 40; i++) {
		await new Promise(r => setTimeout(r, 150));
		const now = await rowCounts(platform);
		if (JSON.stringify(now) === JSON.stringify(last)) return now;
		last = now;
	}
	return last;
}

/** Every circuit-breaker state any broker holds, as `endpoint: state`, for those not closed. */
export function openBreakers(platform: Platform): Record<string, string> {
	const open: Record<string, string> = {};
	for (const broker of platform.brokers) {
		for (const [name, item] of ((broker as any).CircuitBreakerStore ?? new Map()) as Map<string, any>) {
			if (item.state !== "close") open[`${broker.nodeID}:${name}`] = item.state;
		}
	}
	return open;
}
