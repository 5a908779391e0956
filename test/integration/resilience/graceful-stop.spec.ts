/**
 * Stopping a node that is busy (lib/graceful.ts), between two brokers over NATS: a remote call
 * that timed out no longer keeps a context (and its pending request) for ever, and a gateway
 * told to stop refuses new requests at once, finishes those in flight and is gone well within
 * its shutdown timeout.
 */
import { type ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

useTestEnv({ TRANSPORTER: "nats://127.0.0.1:4222", NAMESPACE: `stop-${Math.random().toString(36).slice(2, 8)}`, SHUTDOWN_TIMEOUT_MS: "8000" });

const { ServiceBroker: Broker } = require("moleculer") as typeof import("moleculer");
const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");
const { loadServiceSchema } = require("../../../services") as typeof import("../../../services");
const { drainGatewayOnStop, runningContexts } = require("../../../lib/graceful") as typeof import("../../../lib/graceful");

jest.setTimeout(60_000);

const SLOW_MS = 1200;
let callee: ServiceBroker;
let hangs = 0;

beforeAll(async () => {
	callee = new Broker({ ...brokerOptions({ logger: false }), nodeID: `stop-callee-${process.pid}` });
	callee.createService({
		name: "catalog",
		actions: {
			// Answers after a while: the in-flight work of a stopping gateway.
			list: { auth: "public", handler: () => new Promise(r => setTimeout(() => r({ items: [], total: 0, page: 1, pageSize: 20 }), SLOW_MS)) },
			// Never answers, like a node that died or dropped the request.
			categories: {
				auth: "public",
				handler: () => {
					hangs++;
					return new Promise(() => undefined);
				},
			},
		},
	});
	await callee.start();
});

afterAll(async () => {
	// The hanging handlers would hold the callee's own stop for its timeout: it is not under test.
	(callee as any).services.forEach((s: any) => (s._trackedContexts = []));
	await callee?.stop();
});

async function gateway(nodeID: string): Promise<{ broker: ServiceBroker; base: string }> {
	const broker = new Broker({ ...brokerOptions({ logger: false }), nodeID });
	broker.createService(loadServiceSchema("api"));
	drainGatewayOnStop(broker);
	await broker.start();
	await broker.waitForServices(["catalog"], 10_000);
	return { broker, base: `http://127.0.0.1:${(broker.getLocalService("api") as any).server.address().port}` };
}

it("releases the context of a remote call that timed out, so an idle node tracks none", async () => {
	const { broker } = await gateway(`stop-idle-${process.pid}`);
	try {
		const before = hangs;
		const calls = Array.from({ length: 5 }, () => broker.call("catalog.categories", {}, { timeout: 300 }).catch((err: Error) => err.name));
		expect(await Promise.all(calls)).toEqual(Array(5).fill("RequestTimeoutError"));
		expect(hangs - before).toBe(5);
		// Released a moment after the caller's timeout (lib/graceful.ts RELEASE_GRACE_MS).
		for (let i = 0; i < 20 && runningContexts(broker) > 0; i++) await new Promise(r => setTimeout(r, 50));
		expect(runningContexts(broker)).toBe(0);
		expect((broker as any).transit.pendingRequests.size).toBe(0);
		// Nothing left to wait for: the stop is immediate.
		const t0 = Date.now();
		await broker.stop();
		expect(Date.now() - t0).toBeLessThan(2000);
	} finally {
		if ((broker as any).started) await broker.stop();
	}
});

it("refuses new requests as soon as the gateway stops, finishes those in flight, and stops within its timeout", async () => {
	const { broker, base } = await gateway(`stop-gw-${process.pid}`);
	const inFlight = Array.from({ length: 8 }, () => fetch(`${base}/api/v1/products`).then(r => r.status));
	await new Promise(r => setTimeout(r, 300));
	expect(runningContexts(broker)).toBeGreaterThanOrEqual(8);

	const t0 = Date.now();
	const stopped = broker.stop().then(() => Date.now() - t0);
	await new Promise(r => setTimeout(r, 50));
	// New work gets no answer from this node: the port is closed (or, on a kept-alive connection, a 503).
	const late = await fetch(`${base}/api/v1/products`).then(
		r => r.status,
		() => "refused",
	);
	expect([503, "refused"]).toContain(late);

	expect(await Promise.all(inFlight)).toEqual(Array(8).fill(200));
	const stopMs = await stopped;
	// The in-flight calls took ~SLOW_MS; the stop waited for them and nothing else.
	expect(stopMs).toBeLessThan(SLOW_MS + 2000);
});
