/**
 * Traces as the Swarm stack exports them (ZIPKIN_URL → a collector; here a local HTTP server in
 * Zipkin's place): no credential ever leaves the node in a span, and a checkout's trace shows each
 * saga step with its order and saga ids. Issue 9 item 10: passwords and refresh tokens of login,
 * register, refresh and admin-user creation were exported in clear.
 */
import { type IncomingMessage, type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { ServiceBroker } from "moleculer";
import { TEST_ADMIN, useTestEnv } from "../../support/env";

jest.setTimeout(60_000);

let broker: ServiceBroker;
let collector: Server;
const received: any[] = [];
let api = "";

async function http(method: string, path: string, opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) {
	const headers: Record<string, string> = { ...opts.headers };
	if (opts.token) headers.authorization = `Bearer ${opts.token}`;
	if (opts.body !== undefined) headers["content-type"] = "application/json";
	const res = await fetch(`${api}${path}`, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
	const text = await res.text();
	return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Waits until the exporter's periodic flush has delivered spans of `action`. */
async function spansOf(action: string, timeoutMs = 15_000): Promise<any[]> {
	const until = Date.now() + timeoutMs;
	for (;;) {
		const found = received.filter(s => s.name === `action '${action}'`);
		if (found.length) return found;
		if (Date.now() > until) throw new Error(`no span of ${action} exported (got: ${[...new Set(received.map(s => s.name))].join(", ")})`);
		await new Promise(r => setTimeout(r, 200));
	}
}

beforeAll(async () => {
	// Our stand-in collector binds first; the node is then told where it is.
	collector = createServer((req: IncomingMessage, res) => {
		let body = "";
		req.on("data", d => (body += d));
		req.on("end", () => {
			if (req.url === "/api/v2/spans") received.push(...JSON.parse(body));
			res.writeHead(202);
			res.end();
		});
	});
	await new Promise<void>(r => collector.listen(0, "127.0.0.1", r));
	useTestEnv({ SEED_DEMO: "true", ZIPKIN_URL: `http://127.0.0.1:${(collector.address() as AddressInfo).port}` });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(undefined, { logger: false, namespace: `tracing-${Math.random()}` });
	await broker.start();
	api = `http://127.0.0.1:${(broker.getLocalService("api") as any).server.address().port}`;
});

afterAll(async () => {
	await broker?.stop();
	await new Promise(r => collector?.close(r));
});

it("exports no password, refresh token or access token of register, login, refresh and admin-user creation", async () => {
	const email = `trace-${Date.now()}@example.com`;
	const secrets: string[] = ["a-good-password-1", TEST_ADMIN.password, "new-admin-password-1", "short-pw1"];

	expect((await http("POST", "/api/v1/auth/register", { body: { email: `weak-${email}`, password: "short-pw1", firstName: "W", lastName: "P" } })).status).toBe(422);
	const reg = await http("POST", "/api/v1/auth/register", { body: { email, password: "a-good-password-1", firstName: "Tracy", lastName: "Span" } });
	expect(reg.status).toBe(201);
	const login = await http("POST", "/api/v1/auth/login", { body: { email, password: "a-good-password-1" } });
	expect(login.status).toBe(200);
	const refreshed = await http("POST", "/api/v1/auth/refresh", { body: { refreshToken: login.body.refreshToken } });
	expect(refreshed.status).toBe(200);
	const admin = await http("POST", "/api/v1/auth/login", { body: TEST_ADMIN });
	const created = await http("POST", "/api/v1/admin/users", { token: admin.body.accessToken, body: { email: `admin-${email}`, password: "new-admin-password-1", name: "New Admin", roles: ["support"] } });
	expect(created.status).toBe(201);
	secrets.push(reg.body.refreshToken, reg.body.accessToken, login.body.refreshToken, login.body.accessToken, refreshed.body.refreshToken, refreshed.body.accessToken, admin.body.refreshToken, admin.body.accessToken);

	// The calls were traced (so this test would see a leak) ...
	const [loginSpan] = (await spansOf("auth.login")).filter(s => s.tags["params.email"] === email);
	expect(loginSpan.tags["params.password"]).toBe("[redacted]");
	expect((await spansOf("auth.refresh"))[0].tags["params.refreshToken"]).toBe("[redacted]");
	expect((await spansOf("users.create"))[0].tags["params.password"]).toBe("[redacted]");
	await spansOf("auth.register");
	// ... and none of their secrets is anywhere in what was exported.
	const exported = JSON.stringify(received);
	expect(secrets.filter(s => exported.includes(s))).toEqual([]);
});

it("shows every step of a checkout's saga in one trace, each span with the order id and the saga id", async () => {
	const { DEMO_PRODUCTS } = require("../../../lib/catalog/demo-data") as typeof import("../../../lib/catalog/demo-data");
	const reg = await http("POST", "/api/v1/auth/register", { body: { email: `buyer-${Date.now()}@example.com`, password: "a-good-password-1", firstName: "B", lastName: "Uyer" } });
	const order = await http("POST", "/api/v1/orders", {
		token: reg.body.accessToken,
		headers: { "idempotency-key": "trace-checkout-1", "x-request-id": "trace-checkout-request" },
		body: { shippingAddress: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: DEMO_PRODUCTS[0].id, quantity: 1 }] },
	});
	expect(order.body.status).toBe("CONFIRMED");
	for (const step of ["payments.authorize", "warehouse.reserve", "fulfillment.create", "payments.capture", "warehouse.commit"]) await spansOf(step);
	// The request's span names the order; the saga runs in a trace of its own (requestID
	// `saga-<sagaId>`, so a resumed saga continues it), every step tagged with both ids: searching
	// Jaeger for the order id finds both traces.
	const request = received.find(x => x.name === "action 'orders.create'" && x.tags.requestID === "trace-checkout-request");
	expect(request.tags.orderId).toBe(order.body.id);
	const authorize = received.find(x => x.name === "action 'payments.authorize'" && x.tags.orderId === order.body.id);
	const sagaTrace = received.filter(s => s.traceId === authorize.traceId);
	const steps = sagaTrace.filter(s => ["payments.authorize", "warehouse.reserve", "fulfillment.create", "payments.capture", "warehouse.commit"].some(a => s.name === `action '${a}'`));
	expect(steps.map(s => s.name.replace(/^action '(.*)'$/, "$1")).sort()).toEqual(["fulfillment.create", "payments.authorize", "payments.capture", "warehouse.commit", "warehouse.reserve"]);
	const sagaIds = new Set(steps.map(s => s.tags.sagaId));
	expect(sagaIds.size).toBe(1);
	const [sagaId] = [...sagaIds];
	expect(sagaId).toMatch(/^[0-9a-f-]{36}$/);
	expect(authorize.tags.requestID).toBe(`saga-${sagaId}`);
	for (const s of steps) expect({ step: s.name, orderId: s.tags.orderId }).toEqual({ step: s.name, orderId: order.body.id });
	// The payment token is a credential too.
	expect(steps.find(s => s.name === "action 'payments.authorize'").tags["params.paymentToken"]).toBe("[redacted]");
});
