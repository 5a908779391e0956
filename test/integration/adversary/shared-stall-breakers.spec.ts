/**
 * ADVERSARY (kept). The local settle found here was withdrawn (lib/graceful.ts now settles remote
 * calls only), so both variants below pass; they guard against its return. Found against: two replicas of an action that stall TOGETHER for ~2 s (their shared database
 * stalls, say: both commerce nodes share PostgreSQL), each node calling its own replica (Moleculer
 * preferLocal, as every saga does).
 *
 * Since f8bc058 a node's own calls are settled for its breaker (lib/graceful.ts localAction). When
 * each node's own calls time out, the OTHER replica still looks available in that node's registry,
 * so "only replica" does not apply and each node opens its own local endpoint's breaker. Moleculer
 * then refuses incoming requests for that action on each node too (_getLocalActionEndpoint →
 * ServiceNotAvailableError "is not available locally"): after the stall ends the action is refused
 * cluster-wide for halfOpenTime (10 s) — the very thing notTheCalleesFault's "only replica" rule
 * was written to prevent ("a stall of a few seconds would become the breaker's half-open time of
 * refusals, longer than the saga waits out an unavailable step (~9 s)").
 *
 * Control: the same with the middleware's remote half only (the code before f8bc058).
 */
import { Errors, type Middleware, type ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

useTestEnv({ TRANSPORTER: "nats://127.0.0.1:4222", NAMESPACE: `ss3-${Math.random().toString(36).slice(2, 8)}` });

const { ServiceBroker: Broker } = require("moleculer") as typeof import("moleculer");
const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");
const { RemoteCallDeadlineMiddleware } = require("../../../lib/graceful") as typeof import("../../../lib/graceful");

jest.setTimeout(90_000);

const TIMEOUT_MS = 300;
const STALL_MS = 2000;
const breaker = { minRequestCount: 4, threshold: 0.5, halfOpenTime: 10_000, windowTime: 60 };
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

async function cluster(tag: string, localSettle: boolean, shared: { stalled: boolean }): Promise<ServiceBroker[]> {
	const ns = `ss3-${tag}-${Math.random().toString(36).slice(2, 8)}`;
	const base = brokerOptions({ logger: false });
	const remoteOnly = { name: "RemoteCallDeadline", remoteAction: (RemoteCallDeadlineMiddleware as any).remoteAction } as Middleware;
	const mws = (base.middlewares ?? []).map(m => (m === RemoteCallDeadlineMiddleware && !localSettle ? remoteOnly : m));
	const brokers = ["a", "b"].map(id => {
		const b = new Broker({ ...base, namespace: ns, nodeID: `${ns}-${id}`, requestTimeout: TIMEOUT_MS, circuitBreaker: { ...base.circuitBreaker, ...breaker }, middlewares: mws });
		b.createService({
			name: "ledger",
			actions: {
				async post() {
					while (shared.stalled) await sleep(50);
					return { node: id };
				},
			},
		});
		return b;
	});
	await Promise.all(brokers.map(b => b.start()));
	for (const b of brokers) {
		const deadline = Date.now() + 10_000;
		while ((b.registry.getActionEndpoints("ledger.post")?.count() ?? 0) < 2 && Date.now() < deadline) await sleep(50);
		expect(b.registry.getActionEndpoints("ledger.post")!.count()).toBe(2);
	}
	return brokers;
}

async function post(b: ServiceBroker): Promise<string> {
	try {
		return ((await b.call("ledger.post", {}, { retries: 0 })) as { node: string }).node;
	} catch (err: any) {
		return err instanceof Errors.RequestTimeoutError ? "timeout" : (err.type ?? err.name);
	}
}

describe.each([
	["remote settle only (before f8bc058)", false],
	["local settle too (the tree under review)", true],
])("%s", (_label, localSettle) => {
	const shared = { stalled: false };
	let brokers: ServiceBroker[] = [];
	beforeAll(async () => {
		brokers = await cluster(localSettle ? "with" : "without", localSettle, shared);
	});
	afterAll(async () => {
		shared.stalled = false;
		await Promise.all(brokers.map(b => b.stop()));
	});

	test("once a 2 s stall shared by both replicas is over, the action answers again on both nodes", async () => {
		shared.stalled = true;
		const during: string[] = [];
		const end = Date.now() + STALL_MS;
		// Each node keeps calling (its own replica first), 3 calls at a time.
		await Promise.all(
			brokers.flatMap(b =>
				[0, 1, 2].map(async () => {
					while (Date.now() < end) during.push(await post(b));
				}),
			),
		);
		shared.stalled = false;
		await sleep(TIMEOUT_MS + 400);
		const after: string[] = [];
		for (let i = 0; i < 10; i++) for (const b of brokers) after.push(await post(b));
		const refused = after.filter(x => x !== "a" && x !== "b");
		expect({ duringTimeouts: during.filter(x => x === "timeout").length > 0, refusedAfterStall: refused }).toEqual({ duringTimeouts: true, refusedAfterStall: [] });
	});
});
