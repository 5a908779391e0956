/**
 * ADVERSARY (kept). The local settle found here was withdrawn (lib/graceful.ts now settles remote
 * calls only), so both variants below pass; they guard against its return. Found against: RemoteCallDeadlineMiddleware's new localAction hook (lib/graceful.ts, f8bc058).
 *
 * The hook settles a node's call to its OWN service RELEASE_GRACE_MS after the call's timeout,
 * while the local handler keeps running. Moleculer's ContextTracker and Bulkhead sit OUTSIDE the
 * user middlewares on the local chain, and both key off that inner promise: so once the call is
 * settled, the still-running handler is no longer tracked (a graceful stop does not wait for it),
 * and its bulkhead slot is freed (the per-action concurrency limit no longer bounds handlers).
 * The docstring claims "its context stays tracked".
 *
 * Embedded mode (no transporter, all services in one process) — every call is local.
 */
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

useTestEnv({ NAMESPACE: `ls3-${Math.random().toString(36).slice(2, 8)}` });

const { ServiceBroker: Broker } = require("moleculer") as typeof import("moleculer");
const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");
const { RemoteCallDeadlineMiddleware, runningContexts } = require("../../../lib/graceful") as typeof import("../../../lib/graceful");

jest.setTimeout(30_000);

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
const HANDLER_MS = 1500;
const TIMEOUT_MS = 200;

function node(withDeadline: boolean, events: string[], gauge: { now: number; max: number }): ServiceBroker {
	const base = brokerOptions({ logger: false });
	const b = new Broker({
		...base,
		nodeID: `ls3-${withDeadline ? "with" : "without"}-${Math.random().toString(36).slice(2, 6)}`,
		transporter: null,
		middlewares: (base.middlewares ?? []).filter(m => withDeadline || m !== RemoteCallDeadlineMiddleware),
	});
	b.createService({
		name: "slow",
		actions: {
			work: {
				async handler() {
					await sleep(HANDLER_MS);
					events.push("handler-done");
					return "ok";
				},
			},
			limited: {
				bulkhead: { enabled: true, concurrency: 2, maxQueueSize: 100 },
				async handler() {
					gauge.now++;
					gauge.max = Math.max(gauge.max, gauge.now);
					await sleep(HANDLER_MS);
					gauge.now--;
					return "ok";
				},
			},
		},
		stopped() {
			events.push("service-stopped");
		},
	});
	return b;
}

describe.each([
	["stock Moleculer (no RemoteCallDeadline)", false],
	["with RemoteCallDeadline (the tree under review)", true],
])("%s", (_label, withDeadline) => {
	test("a local handler still running after its caller's timeout stays tracked, and a graceful stop waits for it", async () => {
		const events: string[] = [];
		const b = node(withDeadline, events, { now: 0, max: 0 });
		await b.start();
		const call = b.call("slow.work", {}, { timeout: TIMEOUT_MS, retries: 0 }).catch((e: any) => e.type);
		expect(await call).toBe("REQUEST_TIMEOUT");
		await sleep(TIMEOUT_MS + 400); // past RELEASE_GRACE_MS; the handler runs until ~1500 ms
		const tracked = runningContexts(b);
		await b.stop();
		// The handler is still running: it must be tracked, and the stop must wait for it.
		expect({ tracked, order: events }).toEqual({ tracked: 1, order: ["handler-done", "service-stopped"] });
	});

	test("an action's bulkhead bounds its running handlers for the node's own calls", async () => {
		const gauge = { now: 0, max: 0 };
		const b = node(withDeadline, [], gauge);
		await b.start();
		try {
			const calls = Array.from({ length: 12 }, () => b.call("slow.limited", {}, { timeout: TIMEOUT_MS, retries: 0 }).catch(() => null));
			await Promise.all(calls);
			await sleep(2 * HANDLER_MS);
			expect(gauge.max).toBeLessThanOrEqual(2);
		} finally {
			await sleep(6 * HANDLER_MS); // let the queued handlers drain
			await b.stop();
		}
	});
});
