/**
 * ADVERSARY (0fb8b74, RemoteCallDeadlineMiddleware feeds remote timeouts to the circuit breaker):
 * slowness of the ONLY replica becomes an outage, with the production breaker settings
 * (moleculer.config.ts: minRequestCount 10, threshold 0.5, halfOpenTime 10 s).
 *
 * 1. The only replica stalls briefly (a lock, a GC/CPU burst, a SIGSTOP shorter than the heartbeat
 *    timeout): the calls in flight time out, the breaker opens, and for ~10 s after the callee is
 *    healthy again every call is refused (ServiceNotAvailableError). A control caller without the
 *    middleware (stock behaviour before 0fb8b74) is served as soon as the stall ends.
 * 2. A healthy but slow action (600 ms) called by one impatient caller (timeout 300 ms) opens the
 *    breaker for every caller on that node, including one that gives it 5 s.
 * 3. As 1, with calls given the broker's full default timeout (so only "only replica" protects).
 * Fixed in lib/graceful.ts notTheCalleesFault: a timeout counts only when the call had the
 * action's usual time and another replica could take the calls.
 */
import { Errors, type ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

useTestEnv({ TRANSPORTER: "nats://127.0.0.1:4222", NAMESPACE: `adv-bsc-${Math.random().toString(36).slice(2, 8)}` });

const { ServiceBroker: Broker } = require("moleculer") as typeof import("moleculer");
const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");
const { RemoteCallDeadlineMiddleware } = require("../../../lib/graceful") as typeof import("../../../lib/graceful");

jest.setTimeout(90_000);

const brokers: ServiceBroker[] = [];
let stalledUntil = 0;
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

function caller(nodeID: string, withDeadline: boolean, requestTimeout?: number): ServiceBroker {
	const base = brokerOptions({ logger: false });
	const b = new Broker({ ...base, nodeID, ...(requestTimeout ? { requestTimeout } : {}), middlewares: (base.middlewares ?? []).filter(m => withDeadline || m !== RemoteCallDeadlineMiddleware) });
	brokers.push(b);
	return b;
}

async function outcome(b: ServiceBroker, action: string, timeout?: number): Promise<string> {
	try {
		await b.call(action, {}, { ...(timeout ? { timeout } : {}), retries: 0 });
		return "ok";
	} catch (err: any) {
		if (err instanceof Errors.RequestTimeoutError) return "timeout";
		return err?.name ?? String(err);
	}
}

let withMw: ServiceBroker;
let control: ServiceBroker;
/** Its broker-wide timeout is 1 s: its calls have the action's full time. */
let fullBudget: ServiceBroker;

beforeAll(async () => {
	const callee = new Broker({ ...brokerOptions({ logger: false }), nodeID: "adv-bsc-callee" });
	callee.createService({
		name: "stockx",
		actions: {
			// Healthy, except while "stalled" (it answers once the stall is over, as a resumed process would).
			async reserve() {
				const wait = stalledUntil - Date.now();
				if (wait > 0) await sleep(wait);
				return { ok: true };
			},
			// Healthy but slow.
			async slow() {
				await sleep(600);
				return { ok: true };
			},
		},
	});
	brokers.push(callee);
	withMw = caller("adv-bsc-caller", true);
	control = caller("adv-bsc-control", false);
	fullBudget = caller("adv-bsc-full", true, 1000);
	await Promise.all(brokers.map(b => b.start()));
	await fullBudget.waitForServices(["stockx"], 10_000);
	await withMw.waitForServices(["stockx"], 10_000);
	await control.waitForServices(["stockx"], 10_000);
});

afterAll(async () => {
	stalledUntil = 0;
	await Promise.all(brokers.map(b => b.stop()));
});

test("a 2.5 s stall of the only replica, calls with a 1 s per-call timeout: served as soon as the stall is over, like the control (on 0fb8b74: refused for ~10 s)", async () => {
	for (const b of [withMw, control]) expect(await outcome(b, "stockx.reserve", 1000)).toBe("ok");
	stalledUntil = Date.now() + 2500;
	// Twelve calls in flight during the stall, from each caller (a burst of checkouts).
	const during = await Promise.all([withMw, control].map(b => Promise.all(Array.from({ length: 12 }, () => outcome(b, "stockx.reserve", 1000)))));
	expect(during[0].every(o => o === "timeout")).toBe(true);
	expect(during[1].every(o => o === "timeout")).toBe(true);
	await sleep(Math.max(0, stalledUntil - Date.now()) + 500);
	// The callee is healthy again; call it once a second for 6 s.
	const after: Record<string, string[]> = { withMw: [], control: [] };
	for (let i = 0; i < 6; i++) {
		after.withMw.push(await outcome(withMw, "stockx.reserve", 1000));
		after.control.push(await outcome(control, "stockx.reserve", 1000));
		await sleep(1000);
	}
	process.stdout.write(`[slow-callee] after the stall: ${JSON.stringify(after)}\n`);
	expect(after.control).toEqual(Array(6).fill("ok"));
	// The callee is healthy: served. On 0fb8b74: ServiceNotAvailableError for the breaker's half-open time.
	expect(after.withMw).toEqual(Array(6).fill("ok"));
});

test("one impatient caller (timeout 300 ms) of a healthy 600 ms action does not shut it for a patient caller (timeout 5 s) on the same node (on 0fb8b74 it did)", async () => {
	await Promise.all([withMw, control].map(b => Promise.all(Array.from({ length: 10 }, () => outcome(b, "stockx.slow", 300)))));
	await sleep(400);
	const patient = { withMw: await outcome(withMw, "stockx.slow", 5000), control: await outcome(control, "stockx.slow", 5000) };
	process.stdout.write(`[slow-callee] patient caller: ${JSON.stringify(patient)}\n`);
	expect(patient.control).toBe("ok");
	expect(patient.withMw).toBe("ok");
});

test("a 2.5 s stall of the only replica, calls given the full default timeout: served as soon as the stall is over", async () => {
	await sleep(500);
	expect(await outcome(fullBudget, "stockx.reserve")).toBe("ok");
	stalledUntil = Date.now() + 2500;
	const during = await Promise.all(Array.from({ length: 12 }, () => outcome(fullBudget, "stockx.reserve")));
	expect(during.every(o => o === "timeout")).toBe(true);
	await sleep(Math.max(0, stalledUntil - Date.now()) + 500);
	const after: string[] = [];
	for (let i = 0; i < 4; i++) {
		after.push(await outcome(fullBudget, "stockx.reserve"));
		await sleep(500);
	}
	expect(after).toEqual(Array(4).fill("ok"));
});
