/**
 * Helpers of the catalog's integration tests: an HTTP client for the real gateway, logins, a
 * stand-in for the reviews and warehouse services whose behaviour a test switches, and a look
 * into the catalog's own outbox.
 */
import type { ServiceBroker, ServiceSchema } from "moleculer";
import { Errors } from "moleculer";
import { TEST_ADMIN } from "../../support/env";

export interface Answer {
	status: number;
	body: any;
	ms: number;
}

export interface RequestOptions {
	token?: string;
	body?: unknown;
	/** Sent as is, for malformed bodies. */
	raw?: string;
	contentType?: string;
}

export function gatewayClient(broker: ServiceBroker) {
	const port = (broker.getLocalService("api") as any).server.address().port;
	return async (method: string, path: string, opts: RequestOptions = {}): Promise<Answer> => {
		const headers: Record<string, string> = {};
		if (opts.token) headers.authorization = `Bearer ${opts.token}`;
		const body = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
		if (body !== undefined) headers["content-type"] = opts.contentType ?? "application/json";
		const t0 = performance.now();
		const res = await fetch(`http://127.0.0.1:${port}/api/v1${path}`, { method, headers, body });
		const text = await res.text();
		return { status: res.status, body: text ? JSON.parse(text) : null, ms: performance.now() - t0 };
	};
}

export type Http = ReturnType<typeof gatewayClient>;

/** Tokens of every kind of caller the role matrix needs, through the real identity services. */
export async function callers(http: Http) {
	const login = async (email: string, password: string) => {
		const r = await http("POST", "/auth/login", { body: { email, password } });
		if (r.status !== 200) throw new Error(`login ${email}: ${r.status} ${JSON.stringify(r.body)}`);
		return r.body.accessToken as string;
	};
	const superadmin = await login(TEST_ADMIN.email, TEST_ADMIN.password);
	const admin = async (name: string, roles: string[]) => {
		const email = `${name}@admins.test`;
		const r = await http("POST", "/admin/users", { token: superadmin, body: { email, password: "admin-password-456", name, roles } });
		if (r.status !== 201) throw new Error(`create admin ${name}: ${r.status} ${JSON.stringify(r.body)}`);
		return login(email, "admin-password-456");
	};
	const registered = await http("POST", "/auth/register", { body: { email: "shopper@example.com", password: "shopper-password-1", firstName: "Sam", lastName: "Shopper" } });
	if (registered.status !== 201) throw new Error(`register: ${registered.status} ${JSON.stringify(registered.body)}`);
	return {
		superadmin,
		catalog: await admin("cataloguer", ["catalog"]),
		support: await admin("supporter", ["support", "ops"]),
		customer: registered.body.accessToken as string,
	};
}

export type Mode = "ok" | "slow" | "fail";

/**
 * `reviews.summary` and `warehouse.availability` as the catalog calls them, answering per the
 * mode a test sets. Each stays one endpoint for the whole file: the circuit breaker keeps its
 * state per endpoint name, so a replaced stub would not be the one it trips.
 */
export function dependencyStub(name: "reviews" | "warehouse", action: string, answer: Record<string, unknown>, state: { mode: Mode; calls: number }): ServiceSchema {
	return {
		name,
		actions: {
			[action]: {
				params: name === "reviews" ? { productId: "string" } : { sku: "string" },
				async handler() {
					state.calls++;
					if (state.mode === "slow") await new Promise(r => setTimeout(r, 1500));
					// A failure that says the service is unhealthy (its database is unreachable): the kind the breaker counts.
					if (state.mode === "fail") throw Object.assign(new Errors.MoleculerError(`${name} cannot reach its database`, 500, "BROKEN"), { name: "SequelizeConnectionRefusedError" });
					return { ...answer, internal: "must not reach clients" };
				},
			},
		},
	};
}

/** The catalog's recorded events, oldest first. */
export async function outbox(broker: ServiceBroker): Promise<{ name: string; payload: any }[]> {
	const { defineOutboxModel } = require("../../../lib/bus/outbox-relay") as typeof import("../../../lib/bus/outbox-relay");
	const catalog = broker.getLocalService("catalog") as any;
	const rows: any[] = await defineOutboxModel(catalog.sequelize).findAll({ order: [["occurred_at", "ASC"]], raw: true });
	return rows.map(r => ({ name: r.name, payload: typeof r.payload === "string" ? JSON.parse(r.payload) : r.payload }));
}

/** Every product row, drafts and archived ones included. */
export async function productCount(broker: ServiceBroker): Promise<number> {
	return (broker.getLocalService("catalog") as any).models.Product.count();
}
