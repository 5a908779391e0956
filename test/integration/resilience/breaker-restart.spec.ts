/**
 * A node that comes back as a new process starts with closed breakers on its callers
 * (lib/breaker.ts), over real NATS: the caller's breaker for the node's action is tripped by
 * faults of the old process; once a new process with the same nodeID announces itself — killed
 * and restarted before its heartbeat timed out, or stopped and started again — the caller's calls
 * reach it at once, instead of being refused as "not available" for the breaker's half-open time.
 * A control caller without the middleware shows what stock Moleculer does: it keeps refusing.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { Errors, type ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

useTestEnv({ TRANSPORTER: "nats://127.0.0.1:4222", NAMESPACE: `brr-${Math.random().toString(36).slice(2, 8)}` });

const { ServiceBroker: Broker } = require("moleculer") as typeof import("moleculer");
const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");
const { BreakerResetMiddleware } = require("../../../lib/breaker") as typeof import("../../../lib/breaker");

jest.setTimeout(60_000);

// Tripped after 4 calls; half-open only after a minute, far longer than the test waits.
const breaker = { minRequestCount: 4, threshold: 0.5, halfOpenTime: 60_000, windowTime: 120 };
const NODE = "brr-inventory";

let caller: ServiceBroker;
let control: ServiceBroker;
const callees: ServiceBroker[] = [];
const processes: ChildProcess[] = [];

function callee(failing: boolean): ServiceBroker {
	const base = brokerOptions({ logger: false });
	const b = new Broker({ ...base, nodeID: NODE });
	b.createService({
		name: "stock",
		actions: {
			reserve() {
				// A fault that says the callee is unhealthy (lib/errors.ts countsAgainstHealth): its database is gone.
				if (failing) throw Object.assign(new Errors.MoleculerError("connect ECONNREFUSED 127.0.0.1:5432", 500, "DB_DOWN"), { name: "SequelizeConnectionRefusedError" });
				return { reserved: true };
			},
		},
	});
	callees.push(b);
	return b;
}

/** The callee as a process of its own, so that it can be killed (SIGKILL: no DISCONNECT, no last INFO). */
async function calleeProcess(failing: boolean): Promise<ChildProcess> {
	const code = `
		const { ServiceBroker, Errors } = require("moleculer");
		const b = new ServiceBroker({ nodeID: ${JSON.stringify(NODE)}, namespace: process.env.NAMESPACE, transporter: process.env.TRANSPORTER, logger: false });
		b.createService({ name: "stock", actions: { reserve() {
			if (${failing}) throw Object.assign(new Errors.MoleculerError("connect ECONNREFUSED 127.0.0.1:5432", 500, "DB_DOWN"), { name: "SequelizeConnectionRefusedError" });
			return { reserved: true };
		} } });
		b.start().then(() => console.log("started"));`;
	const child = spawn(process.execPath, ["-e", code], { cwd: join(__dirname, "../../.."), env: process.env, stdio: ["ignore", "pipe", "inherit"] });
	processes.push(child);
	await new Promise<void>((resolve, reject) => {
		child.stdout!.on("data", (d: Buffer) => d.toString().includes("started") && resolve());
		child.on("exit", code => reject(new Error(`callee process exited (${code})`)));
	});
	return child;
}

async function outcome(b: ServiceBroker): Promise<string> {
	try {
		await b.call("stock.reserve", {}, { retries: 0 });
		return "ok";
	} catch (err: any) {
		return err instanceof Errors.ServiceNotAvailableError ? "not available" : `error ${err.type ?? err.name}`;
	}
}

/** Calls until `b` sees the new process (an outcome other than "not available") or `ms` pass; the outcome last seen. */
async function untilReached(b: ServiceBroker, ms: number): Promise<string> {
	const deadline = Date.now() + ms;
	let last = await outcome(b);
	while (last === "not available" && Date.now() < deadline) {
		await new Promise(r => setTimeout(r, 100));
		last = await outcome(b);
	}
	return last;
}

async function trip(): Promise<void> {
	for (let i = 0; i < breaker.minRequestCount; i++) {
		expect(await outcome(caller)).toBe("error DB_DOWN");
		expect(await outcome(control)).toBe("error DB_DOWN");
	}
	expect(await outcome(caller)).toBe("not available");
	expect(await outcome(control)).toBe("not available");
}

beforeAll(async () => {
	const base = brokerOptions({ logger: false });
	expect(base.middlewares).toContain(BreakerResetMiddleware);
	caller = new Broker({ ...base, nodeID: "brr-caller", circuitBreaker: { ...base.circuitBreaker, ...breaker } });
	control = new Broker({
		...base,
		nodeID: "brr-control",
		circuitBreaker: { ...base.circuitBreaker, ...breaker },
		middlewares: (base.middlewares ?? []).filter(m => m !== BreakerResetMiddleware),
	});
	await Promise.all([caller.start(), control.start(), calleeProcess(true)]);
	await Promise.all([caller.waitForServices(["stock"], 10_000), control.waitForServices(["stock"], 10_000)]);
});

afterAll(async () => {
	for (const p of processes) p.kill("SIGKILL");
	await Promise.all([caller?.stop(), control?.stop(), ...callees.map(b => b.stop().catch(() => undefined))]);
});

test("killed and restarted before its heartbeat timed out (a new instanceID): calls reach the new process at once", async () => {
	await trip();
	// Killed: the old process leaves without a DISCONNECT or a last INFO, so its callers still hold
	// the node and its endpoints (the breaker's "unavailable" mark included) until its heartbeat times out.
	const old = processes[0];
	old.kill("SIGKILL");
	await new Promise(r => old.once("exit", r));
	const t0 = Date.now();
	await callee(false).start();
	expect(await untilReached(caller, 10_000)).toBe("ok");
	expect(Date.now() - t0).toBeLessThan(breaker.halfOpenTime / 2);
	// Stock Moleculer keeps the dead process's open breaker for the healthy new one.
	expect(await outcome(control)).toBe("not available");
});

test("stopped and started again (reconnected): calls reach the new process at once; a sick new process trips again", async () => {
	// The healthy process of the previous test goes; a sick one comes back and trips the breaker anew.
	await callees[callees.length - 1].stop();
	await callee(true).start();
	expect(await untilReached(caller, 10_000)).toBe("error DB_DOWN");
	for (let i = 0; i < breaker.minRequestCount; i++) await outcome(caller);
	expect(await outcome(caller)).toBe("not available");
	// Stopped gracefully (DISCONNECT: its callers drop the node's endpoints, so stock Moleculer
	// starts over too), then a healthy process.
	await callees[callees.length - 1].stop();
	await callee(false).start();
	expect(await untilReached(caller, 10_000)).toBe("ok");
});

test("the same process keeps its breakers: only a new process clears them", async () => {
	const running = callees[callees.length - 1];
	await running.stop();
	const sick = callee(true);
	await sick.start();
	expect(await untilReached(caller, 10_000)).toBe("error DB_DOWN");
	for (let i = 0; i < breaker.minRequestCount; i++) await outcome(caller);
	expect(await outcome(caller)).toBe("not available");
	// Its periodic INFO/heartbeats (same instanceID) change nothing.
	await new Promise(r => setTimeout(r, 3_500));
	expect(await outcome(caller)).toBe("not available");
});
