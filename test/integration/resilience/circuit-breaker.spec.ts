/**
 * The platform's circuit breaker (moleculer.config.ts) between two brokers over real NATS: a
 * failing action trips it, calls then fail fast without reaching the handler, the gateway turns
 * that into 503, and it closes again once the action recovers. Client errors and plain 500s (a
 * bug one input triggers) never trip it; only faults that say the callee is unhealthy do.
 */
import { Errors, type ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

useTestEnv({ TRANSPORTER: "nats://127.0.0.1:4222", NAMESPACE: `cb-${Math.random().toString(36).slice(2, 8)}` });

const { ServiceBroker: Broker } = require("moleculer") as typeof import("moleculer");
const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");
const { loadServiceSchema } = require("../../../services") as typeof import("../../../services");

jest.setTimeout(60_000);

const HANDLER_MS = 300;
const state = { failing: true, calls: 0, clientErrorCalls: 0, bugCalls: 0 };

// Small thresholds so the test is short; the mechanism and the `check` are the platform's own.
const breaker = { minRequestCount: 4, threshold: 0.5, halfOpenTime: 1500 };

let caller: ServiceBroker;
let callee: ServiceBroker;
let port: number;

beforeAll(async () => {
	const base = brokerOptions({ logger: false });
	callee = new Broker({ ...base, nodeID: "cb-callee", circuitBreaker: { ...base.circuitBreaker, ...breaker } });
	// Stands in for the catalog so the gateway's real route table reaches it.
	callee.createService({
		name: "catalog",
		actions: {
			list: {
				auth: "public",
				async handler() {
					state.calls++;
					await new Promise(r => setTimeout(r, HANDLER_MS));
					// A fault that says something about the callee's health: its database cannot be reached.
					if (state.failing) throw Object.assign(new Errors.MoleculerError("connect ECONNREFUSED 127.0.0.1:5432", 500, "DB_DOWN"), { name: "SequelizeConnectionRefusedError" });
					return { items: [], total: 0, page: 1, pageSize: 20 };
				},
			},
			categories: {
				auth: "public",
				handler() {
					state.clientErrorCalls++;
					throw new Errors.MoleculerClientError("bad input", 422, "VALIDATION_ERROR");
				},
			},
			get: {
				auth: "public",
				params: { id: "string" },
				handler() {
					state.bugCalls++;
					throw new TypeError("Cannot read properties of undefined (reading 'x')");
				},
			},
		},
	});
	caller = new Broker({ ...base, nodeID: "cb-caller", circuitBreaker: { ...base.circuitBreaker, ...breaker } });
	caller.createService(loadServiceSchema("api"));
	await Promise.all([callee.start(), caller.start()]);
	await caller.waitForServices(["catalog"], 10_000);
	port = (caller.getLocalService("api") as any).server.address().port;
});

afterAll(async () => {
	await Promise.all([caller?.stop(), callee?.stop()]);
});

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value?: T; error?: any }> {
	const t0 = Date.now();
	try {
		return { ms: Date.now() - t0, value: await fn() };
	} catch (error) {
		return { ms: Date.now() - t0, error };
	}
}

it("does not trip on client errors", async () => {
	for (let i = 0; i < 8; i++) {
		const r = await timed(() => caller.call("catalog.categories"));
		expect(r.error?.code).toBe(422);
	}
	expect(state.clientErrorCalls).toBe(8);
});

it("does not trip on plain server errors that one input triggers", async () => {
	for (let i = 0; i < 8; i++) {
		const r = await timed(() => caller.call("catalog.get", { id: "x" }));
		expect(r.error?.name).toBe("TypeError");
	}
	expect(state.bugCalls).toBe(8);
	expect([...(caller as any).CircuitBreakerStore.values()].every((item: any) => item.state === "close")).toBe(true);
});

it("trips after failures, then fails fast without calling the handler, as 503 through the gateway", async () => {
	for (let i = 0; i < breaker.minRequestCount; i++) {
		const r = await timed(() => caller.call("catalog.list"));
		expect(r.error?.code).toBe(500);
		expect(r.ms).toBeGreaterThanOrEqual(HANDLER_MS - 20);
	}
	const before = state.calls;

	const fast = await timed(() => caller.call("catalog.list"));
	expect(fast.error).toBeInstanceOf(Errors.ServiceNotAvailableError);
	expect(fast.ms).toBeLessThan(HANDLER_MS / 3);

	const t0 = Date.now();
	const res = await fetch(`http://127.0.0.1:${port}/api/v1/products`);
	expect(Date.now() - t0).toBeLessThan(HANDLER_MS);
	expect(res.status).toBe(503);
	expect(await res.json()).toMatchObject({ name: "ServiceUnavailableError", code: 503, type: "SERVICE_UNAVAILABLE" });
	expect(state.calls).toBe(before);
});

it("closes again once the action recovers", async () => {
	state.failing = false;
	await new Promise(r => setTimeout(r, breaker.halfOpenTime + 200));
	const r = await timed(() => caller.call("catalog.list"));
	expect(r.value).toEqual({ items: [], total: 0, page: 1, pageSize: 20 });
	const res = await fetch(`http://127.0.0.1:${port}/api/v1/products`);
	expect(res.status).toBe(200);
});
