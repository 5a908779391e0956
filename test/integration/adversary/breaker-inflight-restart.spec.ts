/**
 * ADVERSARY: calls in flight to a process that is SIGKILLed time out later (RequestTimeoutError
 * counts against health). If the node came back as a new process in between, BreakerResetMiddleware
 * has already dropped the breaker item, and Moleculer's circuit breaker re-reads the item with
 * getEpState(ep) in its catch: the late failures of the DEAD process land on the NEW process's
 * fresh item, and can trip the breaker of a healthy new process (default options: 10 calls, 50 %).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { Errors, type ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

useTestEnv({ TRANSPORTER: "nats://127.0.0.1:4222", NAMESPACE: `adv-bri-${Math.random().toString(36).slice(2, 8)}` });

const { ServiceBroker: Broker } = require("moleculer") as typeof import("moleculer");
const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");

jest.setTimeout(60_000);
const NODE = "adv-bri-inventory";
const processes: ChildProcess[] = [];
let caller: ServiceBroker;
let healthy: ServiceBroker | undefined;

async function hangingCallee(): Promise<ChildProcess> {
	const code = `
		const { ServiceBroker } = require("moleculer");
		const b = new ServiceBroker({ nodeID: ${JSON.stringify(NODE)}, namespace: process.env.NAMESPACE, transporter: process.env.TRANSPORTER, logger: false });
		b.createService({ name: "stock", actions: { reserve() { return new Promise(() => {}); } } });
		b.start().then(() => console.log("started"));`;
	const child = spawn(process.execPath, ["-e", code], { cwd: join(__dirname, "../../.."), env: process.env, stdio: ["ignore", "pipe", "inherit"] });
	processes.push(child);
	await new Promise<void>((resolve, reject) => {
		child.stdout!.on("data", (d: Buffer) => d.toString().includes("started") && resolve());
		child.on("exit", code => reject(new Error(`callee process exited (${code})`)));
	});
	return child;
}

async function outcome(b: ServiceBroker, timeout = 4_000): Promise<string> {
	try {
		await b.call("stock.reserve", {}, { retries: 0, timeout });
		return "ok";
	} catch (err: any) {
		return err instanceof Errors.ServiceNotAvailableError ? "not available" : `error ${err.type ?? err.name}`;
	}
}

afterAll(async () => {
	for (const p of processes) p.kill("SIGKILL");
	await Promise.all([caller?.stop(), healthy?.stop()]);
});

test("late timeouts of the dead process do not trip the breaker of the healthy new process", async () => {
	const base = brokerOptions({ logger: false });
	caller = new Broker({ ...base, nodeID: "adv-bri-caller" });
	await Promise.all([caller.start(), hangingCallee()]);
	await caller.waitForServices(["stock"], 10_000);
	await new Promise(r => setTimeout(r, 500));

	// 12 checkouts in flight when the node dies (default breaker: minRequestCount 10, threshold 0.5).
	const inflight = Array.from({ length: 12 }, () => outcome(caller, 4_000));
	await new Promise(r => setTimeout(r, 200));
	const old = processes[0];
	old.kill("SIGKILL");
	await new Promise(r => old.once("exit", r));
	healthy = new Broker({ ...brokerOptions({ logger: false }), nodeID: NODE });
	healthy.createService({ name: "stock", actions: { reserve: () => ({ reserved: true }) } });
	await healthy.start();

	// Light traffic to the healthy new process, across the moment the old calls time out.
	const seen: string[] = [];
	const until = Date.now() + 8_000;
	while (Date.now() < until) {
		seen.push(await outcome(caller));
		await new Promise(r => setTimeout(r, 500));
	}
	const old12 = await Promise.all(inflight);
	console.log("in-flight:", old12.join(","), "\nafter restart:", seen.join(","));
	expect(seen.filter(s => s !== "ok")).toEqual([]);
});
