/**
 * The admin payment endpoints through the gateway: who may list and refund, what bad input gets
 * (and that it changes nothing), and the error shape of API.md.
 */
import type { ServiceBroker } from "moleculer";
import { TEST_ADMIN, useTestEnv } from "../../support/env";

jest.setTimeout(60_000);

let broker: ServiceBroker;
let base: string;
const tokens: Record<"superadmin" | "support" | "ops" | "customer", string> = {} as any;

async function http(method: string, path: string, opts: { body?: unknown; raw?: string; token?: string } = {}) {
	const res = await fetch(base + path, {
		method,
		headers: { ...(opts.body !== undefined || opts.raw ? { "content-type": "application/json" } : {}), ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
		body: opts.raw ?? (opts.body !== undefined ? JSON.stringify(opts.body) : undefined),
	});
	const text = await res.text();
	return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function login(email: string, password: string): Promise<string> {
	const r = await http("POST", "/api/v1/auth/login", { body: { email, password } });
	expect(r.status).toBe(200);
	return r.body.accessToken;
}

async function capturedPayment(orderId: string, amount: number): Promise<string> {
	const { paymentId } = await broker.call<any, any>("payments.authorize", { orderId, amount: { amount, currency: "USD" }, paymentToken: "tok_mastercard", idempotencyKey: `${orderId}:a` });
	await broker.call("payments.capture", { orderId, idempotencyKey: `${orderId}:c` });
	return paymentId;
}

const paymentOf = async (orderId: string) => (await http("GET", `/api/v1/admin/payments?orderId=${orderId}`, { token: tokens.support })).body.items[0];

beforeAll(async () => {
	useTestEnv({ AUTH_RATE_LIMIT_MAX: "1000" });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(["api", "auth", "users", "customers", "payments"], { logger: false, namespace: `payapi-${Math.random()}` });
	await broker.start();
	base = `http://127.0.0.1:${(broker.getLocalService("api") as any).server.address().port}`;
	tokens.superadmin = await login(TEST_ADMIN.email, TEST_ADMIN.password);
	for (const role of ["support", "ops"] as const) {
		const r = await http("POST", "/api/v1/admin/users", { token: tokens.superadmin, body: { email: `${role}@test.local`, password: "a-long-password-1", name: role, roles: [role] } });
		expect(r.status).toBe(201);
		tokens[role] = await login(`${role}@test.local`, "a-long-password-1");
	}
	const c = await http("POST", "/api/v1/auth/register", { body: { email: "buyer@test.local", password: "a-long-password-1", firstName: "B", lastName: "Uyer" } });
	expect(c.status).toBe(201);
	tokens.customer = c.body.accessToken;
});

afterAll(() => broker?.stop());

describe("GET /admin/payments", () => {
	it("lists payments to any admin, filtered by order, with amount, captured and refunded as money in minor units", async () => {
		const id = await capturedPayment("list-1", 4200);
		const r = await http("GET", "/api/v1/admin/payments?orderId=list-1", { token: tokens.ops });
		expect(r).toEqual({
			status: 200,
			body: { items: [{ id, orderId: "list-1", status: "CAPTURED", amount: { amount: 4200, currency: "USD" }, captured: { amount: 4200, currency: "USD" }, refunded: { amount: 0, currency: "USD" }, brand: "mastercard", createdAt: expect.any(String) }], total: 1, page: 1, pageSize: 20 },
		});
	});

	it("pages, clamping pageSize to 1..100", async () => {
		await capturedPayment("list-2", 100);
		const r = await http("GET", "/api/v1/admin/payments?page=1&pageSize=500", { token: tokens.support });
		expect(r.status).toBe(200);
		expect({ page: r.body.page, pageSize: r.body.pageSize }).toEqual({ page: 1, pageSize: 100 });
		expect(r.body.items).toHaveLength(r.body.total);
		expect(r.body.total).toBeGreaterThanOrEqual(2);
		const one = await http("GET", "/api/v1/admin/payments?pageSize=1&page=2", { token: tokens.support });
		expect({ pageSize: one.body.pageSize, items: one.body.items.length, second: one.body.items[0].id }).toEqual({ pageSize: 1, items: 1, second: r.body.items[1].id });
	});

	it("is for admins only: 401 without a token, 403 for a customer", async () => {
		expect(await http("GET", "/api/v1/admin/payments")).toMatchObject({ status: 401, body: { code: 401 } });
		expect(await http("GET", "/api/v1/admin/payments", { token: tokens.customer })).toMatchObject({ status: 403, body: { code: 403, type: "FORBIDDEN" } });
	});

	it("refuses unknown query fields and bad values with 422", async () => {
		for (const q of ["foo=1", "page=abc", "status=LOST"]) {
			expect(await http("GET", `/api/v1/admin/payments?${q}`, { token: tokens.support })).toMatchObject({ status: 422, body: { code: 422, type: expect.any(String) } });
		}
	});
});

describe("POST /admin/payments/:id/refund", () => {
	it("refunds part and then the rest for role support", async () => {
		const id = await capturedPayment("refund-1", 5000);
		const part = await http("POST", `/api/v1/admin/payments/${id}/refund`, { token: tokens.support, body: { amount: 1200 } });
		expect(part).toMatchObject({ status: 200, body: { id, orderId: "refund-1", status: "PARTIALLY_REFUNDED", captured: { amount: 5000, currency: "USD" }, refunded: { amount: 1200, currency: "USD" } } });
		const rest = await http("POST", `/api/v1/admin/payments/${id}/refund`, { token: tokens.superadmin, body: {} });
		expect(rest).toMatchObject({ status: 200, body: { id, status: "REFUNDED", captured: { amount: 5000, currency: "USD" }, refunded: { amount: 5000, currency: "USD" } } });
	});

	it("needs role support: ops gets 403 MISSING_ROLE and nothing is refunded", async () => {
		const id = await capturedPayment("refund-2", 5000);
		expect(await http("POST", `/api/v1/admin/payments/${id}/refund`, { token: tokens.ops, body: { amount: 100 } })).toMatchObject({ status: 403, body: { code: 403, type: "MISSING_ROLE" } });
		expect(await http("POST", `/api/v1/admin/payments/${id}/refund`, { token: tokens.customer, body: { amount: 100 } })).toMatchObject({ status: 403 });
		expect(await http("POST", `/api/v1/admin/payments/${id}/refund`, { body: { amount: 100 } })).toMatchObject({ status: 401 });
		expect(await paymentOf("refund-2")).toMatchObject({ status: "CAPTURED", refunded: { amount: 0, currency: "USD" } });
	});

	it("answers bad input with 422, an unknown payment with 404 and too much with 409, refunding nothing", async () => {
		const id = await capturedPayment("refund-3", 5000);
		// API.md: only an absent amount means "the rest"; null is refused like 0.
		for (const body of [{ amount: null }, { amount: 0 }, { amount: -5 }, { amount: "100" }, { amount: 1.5 }, { amount: 100, currency: "USD" }]) {
			expect(await http("POST", `/api/v1/admin/payments/${id}/refund`, { token: tokens.support, body })).toMatchObject({ status: 422, body: { name: "ValidationError", code: 422, type: "VALIDATION_ERROR", data: expect.any(Array) } });
		}
		expect(await http("POST", `/api/v1/admin/payments/${id}/refund`, { token: tokens.support, raw: "{ amount: " })).toMatchObject({ status: 400 });
		expect(await http("POST", "/api/v1/admin/payments/no-such-payment/refund", { token: tokens.support, body: {} })).toMatchObject({ status: 404, body: { code: 404, type: "PAYMENT_NOT_FOUND" } });
		expect(await http("POST", `/api/v1/admin/payments/${id}/refund`, { token: tokens.support, body: { amount: 5001 } })).toMatchObject({ status: 409, body: { code: 409, type: "REFUND_EXCEEDS_CAPTURE", data: { left: 5000 } } });
		expect(await paymentOf("refund-3")).toMatchObject({ status: "CAPTURED", refunded: { amount: 0, currency: "USD" } });
	});

	it("refuses to refund a payment that was never captured with 409", async () => {
		const { paymentId } = await broker.call<any, any>("payments.authorize", { orderId: "refund-4", amount: { amount: 700, currency: "USD" }, paymentToken: "tok_visa", idempotencyKey: "refund-4:a" });
		expect(await http("POST", `/api/v1/admin/payments/${paymentId}/refund`, { token: tokens.support, body: {} })).toMatchObject({ status: 409, body: { type: "ILLEGAL_PAYMENT_TRANSITION" } });
		expect(await paymentOf("refund-4")).toMatchObject({ status: "AUTHORIZED", captured: { amount: 0, currency: "USD" }, refunded: { amount: 0, currency: "USD" } });
	});
});
