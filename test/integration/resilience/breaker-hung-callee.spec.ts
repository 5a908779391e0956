/**
 * A hung callee is isolated by its circuit breaker, over real NATS (issue 7: "call timeouts ...
 * consistent with what the callee waits for"; docs/LIMITS.md "The circuit breaker").
 *
 * Two replicas of `stock.reserve`: one answers, the other takes the request and never answers (a
 * handler stuck on a lock, a frozen event loop — it keeps sending heartbeats, so the registry never
 * drops it). Moleculer's Timeout middleware sits outside its CircuitBreaker middleware, so on its
 * own a remote call's timeout never reaches the breaker: every other call waits the full timeout,
 * for ever. RemoteCallDeadlineMiddleware (lib/graceful.ts) settles the abandoned call as timed out
 * 250 ms after the caller had its 504, the breaker counts it, opens on the hung endpoint, and the
 * healthy replica takes every call. A control caller without the middleware shows stock Moleculer.
 */
import { Errors, type ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

useTestEnv({ TRANSPORTER: "nats://127.0.0.1:4222", NAMESPACE: `bhc-${Math.random().toString(36).slice(2, 8)}` });

const { ServiceBroker: Broker } = require("moleculer") as typeof import("moleculer");
const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");
const { RemoteCallDeadlineMiddleware } = require("../../../lib/graceful") as typeof import("../../../lib/graceful");

jest.setTimeout(60_000);

const breaker = { minRequestCount: 4, threshold: 0.5, halfOpenTime: 60_000, windowTime: 120 };
const TIMEOUT_MS = 300;
const brokers: ServiceBroker[] = [];
/** Releases the hung handler's pending calls at the end, so nothing outlives the test. */
const release: (() => void)[] = [];

function replica(nodeID: string, hung: boolean): ServiceBroker {
	const b = new Broker({ ...brokerOptions({ logger: false }), nodeID });
	b.createService({
		name: "stock",
		actions: {
			reserve() {
				if (hung) return new Promise(resolve => release.push(() => resolve({ node: nodeID })));
				return { node: nodeID };
			},
		},
	});
	brokers.push(b);
	return b;
}

function caller(nodeID: string, withDeadline: boolean): ServiceBroker {
	const base = brokerOptions({ logger: false });
	const b = new Broker({
		...base,
		nodeID,
		requestTimeout: TIMEOUT_MS,
		circuitBreaker: { ...base.circuitBreaker, ...breaker },
		middlewares: (base.middlewares ?? []).filter(m => withDeadline || m !== RemoteCallDeadlineMiddleware),
	});
	brokers.push(b);
	return b;
}

/** One call: the answering node, or the error's type; and how long the caller waited (ms). */
async function call(b: ServiceBroker): Promise<{ outcome: string; ms: number }> {
	const started = performance.now();
	try {
		const res = (await b.call("stock.reserve", {}, { retries: 0 })) as { node: string };
		return { outcome: res.node, ms: performance.now() - started };
	} catch (err: any) {
		return { outcome: err instanceof Errors.RequestTimeoutError ? "timeout" : `error ${err.type ?? err.name}`, ms: performance.now() - started };
	}
}

/** `n` calls one after the other, with a pause after each timeout so the breaker has its count. */
async function calls(b: ServiceBroker, n: number): Promise<{ outcome: string; ms: number }[]> {
	const out: { outcome: string; ms: number }[] = [];
	for (let i = 0; i < n; i++) {
		const r = await call(b);
		out.push(r);
		if (r.outcome === "timeout") await new Promise(res => setTimeout(res, 300));
	}
	return out;
}

beforeAll(async () => {
	const nodes = [replica("bhc-healthy", false), replica("bhc-hung", true), caller("bhc-caller", true), caller("bhc-control", false)];
	await Promise.all(nodes.map(b => b.start()));
	for (const b of nodes.slice(2)) {
		await b.waitForServices(["stock"], 10_000);
		// Both replicas known before the first call, so the round robin reaches the hung one.
		const deadline = Date.now() + 10_000;
		while ((b.registry.getActionEndpoints("stock.reserve")?.count() ?? 0) < 2 && Date.now() < deadline) await new Promise(r => setTimeout(r, 50));
		expect(b.registry.getActionEndpoints("stock.reserve")!.count()).toBe(2);
	}
});

afterAll(async () => {
	for (const r of release) r();
	await Promise.all(brokers.map(b => b.stop()));
});

test("the caller gets its 504 at the timeout; once enough calls timed out, the hung replica's breaker opens and the healthy one takes every call", async () => {
	const b = brokers[2];
	const warmup = await calls(b, 2 * breaker.minRequestCount + 2);
	const timeouts = warmup.filter(r => r.outcome === "timeout");
	expect(timeouts.length).toBeGreaterThanOrEqual(breaker.minRequestCount);
	// The middleware rejects only the inner call, 250 ms later: the caller still has its answer at the timeout.
	for (const t of timeouts) expect(t.ms).toBeLessThan(TIMEOUT_MS + 200);

	const after = await calls(b, 20);
	expect(after.map(r => r.outcome)).toEqual(Array(20).fill("bhc-healthy"));
	// The hung replica's endpoint is the one closed (Moleculer sets ep.state false while its breaker is open).
	const endpoints = (b.registry.getActionEndpoints("stock.reserve") as any).endpoints as { id: string; state: boolean }[];
	expect(Object.fromEntries(endpoints.map(ep => [ep.id, ep.state]))).toEqual({ "bhc-healthy": true, "bhc-hung": false });
});

test("control, stock Moleculer: without the middleware the breaker never hears of the timeouts and half the calls keep waiting the full timeout", async () => {
	const b = brokers[3];
	await calls(b, 2 * breaker.minRequestCount + 2);
	const after = await calls(b, 20);
	const timeouts = after.filter(r => r.outcome === "timeout").length;
	expect(timeouts).toBeGreaterThanOrEqual(8);
	expect(after.filter(r => r.outcome === "bhc-healthy").length).toBe(20 - timeouts);
});
