/**
 * A node's operations endpoint as Prometheus and Swarm use it: the whole platform in one process
 * (SQLite), metrics on, a few real checkouts through the gateway, then scrapes.
 *   - every metric a Grafana dashboard or an alert rule names is exported;
 *   - the port listens on the configured interface only, wants the token, shows no host details;
 *   - /health/ready answers from the node's own databases.
 */
import { networkInterfaces } from "node:os";
import type { ServiceBroker } from "moleculer";
import { TEST_ADMIN, useTestEnv } from "../../support/env";
import { PROMETHEUS_OWN, monitoredMetrics } from "../../support/monitoring";

jest.setTimeout(60_000);

const TOKEN = "scrape-token-0123456789abcdef";
let broker: ServiceBroker;
let api = "";
let ops = "";

async function http(method: string, path: string, opts: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) {
	const headers: Record<string, string> = { ...opts.headers };
	if (opts.token) headers.authorization = `Bearer ${opts.token}`;
	if (opts.body !== undefined) headers["content-type"] = "application/json";
	const res = await fetch(`${api}${path}`, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
	const text = await res.text();
	return { status: res.status, body: text ? JSON.parse(text) : null };
}

const scrape = (headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }) => fetch(`${ops}/metrics`, { headers });

beforeAll(async () => {
	useTestEnv({ SEED_DEMO: "true", METRICS_ENABLED: "true", METRICS_PORT: "0", METRICS_HOST: "127.0.0.1", METRICS_AUTH_TOKEN: TOKEN });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	const { boundPorts } = require("../../../bin/start") as typeof import("../../../bin/start");
	broker = createBroker(undefined, { logger: false, nodeID: "ops-test-node", namespace: `ops-${Math.random()}` });
	await broker.start();
	const ports = await boundPorts(broker);
	api = `http://127.0.0.1:${ports.httpPort}`;
	ops = `http://127.0.0.1:${ports.metricsPort}`;

	// Traffic that makes the business metrics move: a confirmed and a declined checkout, a refund.
	const { DEMO_PRODUCTS } = require("../../../lib/catalog/demo-data") as typeof import("../../../lib/catalog/demo-data");
	const email = `ops-${Date.now()}@example.com`;
	const reg = await http("POST", "/api/v1/auth/register", { body: { email, password: "a-good-password-1", firstName: "Op", lastName: "Erator" } });
	expect(reg.status).toBe(201);
	const checkout = (key: string, paymentToken: string) =>
		http("POST", "/api/v1/orders", {
			token: reg.body.accessToken,
			headers: { "idempotency-key": key },
			body: { shippingAddress: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, shippingMethod: "standard", paymentToken, items: [{ productId: DEMO_PRODUCTS[0].id, quantity: 1 }] },
		});
	const confirmed = await checkout("ops-1", "tok_visa");
	expect(confirmed.body.status).toBe("CONFIRMED");
	expect((await checkout("ops-2", "tok_declined")).body).toMatchObject({ status: "REJECTED", failureReason: "PAYMENT_DECLINED" });
	const admin = await http("POST", "/api/v1/auth/login", { body: TEST_ADMIN });
	const payments = await http("GET", `/api/v1/admin/payments?orderId=${confirmed.body.id}`, { token: admin.body.accessToken });
	expect((await http("POST", `/api/v1/admin/payments/${payments.body.items[0].id}/refund`, { token: admin.body.accessToken, body: { amount: 100 } })).status).toBe(200);
});

afterAll(() => broker?.stop());

/** Metric families in a Prometheus text exposition (`# TYPE` lines). */
function families(text: string): Set<string> {
	return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map(m => m[1]));
}

it("exports every metric a Grafana dashboard or an alert rule names", async () => {
	const res = await scrape();
	expect(res.status).toBe(200);
	const exported = families(await res.text());
	// Moleculer prints a metric once it has a sample; its breaker gauges have none until a breaker
	// trips. Those count as exported when the node registered them with its reporter.
	const registered = new Set(((broker as any).metrics.list() as { name: string }[]).map(m => m.name.replace(/[.-]/g, "_")));
	const family = (name: string) => name.replace(/_(bucket|sum|count)$/, "");
	const missing = [...monitoredMetrics()]
		.filter(([name]) => !PROMETHEUS_OWN.has(name))
		.filter(([name]) => !exported.has(name) && !exported.has(family(name)) && !registered.has(name) && !registered.has(family(name)))
		.map(([name, where]) => `${name} (${where.join("; ")})`);
	expect(missing).toEqual([]);
});

it("counts checkouts by outcome and reason, declines, refunds and gateway answers by route pattern", async () => {
	const text = await (await scrape()).text();
	expect(text).toMatch(/^checkouts_total\{outcome="CONFIRMED",reason=""\} [1-9]/m);
	expect(text).toMatch(/^checkouts_total\{outcome="REJECTED",reason="PAYMENT_DECLINED"\} [1-9]/m);
	expect(text).toMatch(/^checkout_duration_seconds_count\{outcome="CONFIRMED"\} [1-9]/m);
	expect(text).toMatch(/^payment_declines_total\{reason="PAYMENT_DECLINED"\} [1-9]/m);
	expect(text).toMatch(/^refunded_amount_cents_total\{currency="USD"\} 100$/m);
	expect(text).toMatch(/^gateway_http_requests_total\{method="POST",route="\/api\/v1\/orders",status="201"\} 2$/m);
	expect(text).toMatch(/^gateway_http_requests_total\{method="POST",route="\/api\/v1\/admin\/payments\/:id\/refund",status="200"\} 1$/m);
	expect(text).toMatch(/^saga_instances\{service="orders",saga="checkout",status="COMPLETED"\} [1-9]/m);
	expect(text).toMatch(/^orders_by_status\{status="CONFIRMED",reason=""\} [1-9]/m);
	expect(text).toMatch(/^node_ready 1$/m);
	expect(text).not.toMatch(/metrics_scrape_source_errors_total\{[^}]*\} [1-9]/);
});

it("refuses a scrape without the token or with a wrong one", async () => {
	expect((await scrape({})).status).toBe(401);
	expect((await scrape({ authorization: "Bearer wrong-token-0123456789abcdef" })).status).toBe(401);
	expect((await scrape({ authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString("base64")}` })).status).toBe(401);
});

it("accepts basic auth when that is what is configured", () => {
	const { authorizedScrape } = require("../../../lib/metrics") as typeof import("../../../lib/metrics");
	const basic = (s: string) => `Basic ${Buffer.from(s).toString("base64")}`;
	expect(authorizedScrape(basic("prometheus:a-long-password"), { basicAuth: "prometheus:a-long-password" })).toBe(true);
	expect(authorizedScrape(basic("prometheus:another-password"), { basicAuth: "prometheus:a-long-password" })).toBe(false);
	expect(authorizedScrape(undefined, { basicAuth: "prometheus:a-long-password" })).toBe(false);
	expect(authorizedScrape(undefined, {})).toBe(true);
});

it("reveals no host details: no hostname, user, network address, OS release or process arguments", async () => {
	const text = await (await scrape()).text();
	expect(text).not.toMatch(/^os_(hostname|type|release|arch|platform|user_\w+|network_\w+|cpu_info_\w+)\b/m);
	expect(text).not.toMatch(/^process_(arguments|pid|ppid|versions_\w+)\b/m);
	const { hostname, userInfo } = require("node:os") as typeof import("node:os");
	expect(text).not.toContain(hostname());
	expect(text).not.toContain(userInfo().homedir);
});

it("listens on the configured interface only", async () => {
	const reporter: any = (broker as any).metrics.reporter.find((r: any) => typeof r.boundPort === "function");
	expect(reporter.server.address().address).toBe("127.0.0.1");
	const other = Object.values(networkInterfaces())
		.flat()
		.find(a => a && a.family === "IPv4" && !a.internal);
	if (!other) return; // no other interface on this machine to try
	await expect(fetch(`http://${other.address}:${reporter.boundPort()}/health/live`, { signal: AbortSignal.timeout(2000) })).rejects.toThrow();
});

it("answers /health/ready from this node's own databases, naming the one that is down", async () => {
	const ready = await fetch(`${ops}/health/ready`);
	expect(ready.status).toBe(200);
	expect(await ready.json()).toEqual({ status: "ok", nodeID: "ops-test-node", services: expect.arrayContaining(["api", "orders", "payments"]), down: [], degraded: [] });

	// The reviews database stops answering.
	const reviews: any = broker.getLocalService("reviews");
	const query = reviews.sequelize.query;
	reviews.sequelize.query = () => Promise.reject(new Error("SQLITE_CANTOPEN"));
	try {
		const down = await fetch(`${ops}/health/ready`);
		expect(down.status).toBe(503);
		expect(await down.json()).toMatchObject({ status: "unavailable", down: ["reviews:database"] });
		expect(await (await scrape()).text()).toMatch(/^node_ready 0$/m);
	} finally {
		reviews.sequelize.query = query;
	}
	expect((await fetch(`${ops}/health/ready`)).status).toBe(200);
});
