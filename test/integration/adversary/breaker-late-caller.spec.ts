/**
 * ADVERSARY: a caller that starts AFTER the callee is already up learns of the callee during
 * transit.connect (INFO answering DISCOVER), before BreakerResetMiddleware.started attached its
 * localBus listeners. Its `instances` map has no entry for the callee, so the first restart of the
 * callee (new instanceID on $node.updated) looks like `before === undefined` and is NOT treated as a
 * new process: the dead process's open breaker is kept.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { Errors, type ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

useTestEnv({ TRANSPORTER: "nats://127.0.0.1:4222", NAMESPACE: `adv-brl-${Math.random().toString(36).slice(2, 8)}` });

const { ServiceBroker: Broker } = require("moleculer") as typeof import("moleculer");
const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");

jest.setTimeout(60_000);
const breaker = { minRequestCount: 4, threshold: 0.5, halfOpenTime: 60_000, windowTime: 120 };
const NODE = "adv-brl-inventory";
const processes: ChildProcess[] = [];
let caller: ServiceBroker;
let healthy: ServiceBroker | undefined;

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

afterAll(async () => {
	for (const p of processes) p.kill("SIGKILL");
	await Promise.all([caller?.stop(), healthy?.stop()]);
});

test("caller started after the callee: the callee's first restart still clears the dead process's breaker", async () => {
	// Callee fully up first, with a settle time so no INFO of it arrives after the caller's middleware starts.
	await calleeProcess(true);
	await new Promise(r => setTimeout(r, 1_500));
	const base = brokerOptions({ logger: false });
	caller = new Broker({ ...base, nodeID: "adv-brl-caller", circuitBreaker: { ...base.circuitBreaker, ...breaker } });
	await caller.start();
	await caller.waitForServices(["stock"], 10_000);
	for (let i = 0; i < breaker.minRequestCount; i++) expect(await outcome(caller)).toBe("error DB_DOWN");
	expect(await outcome(caller)).toBe("not available");

	const old = processes[0];
	old.kill("SIGKILL");
	await new Promise(r => old.once("exit", r));
	healthy = new Broker({ ...brokerOptions({ logger: false }), nodeID: NODE });
	healthy.createService({ name: "stock", actions: { reserve: () => ({ reserved: true }) } });
	await healthy.start();

	const deadline = Date.now() + 8_000;
	let last = await outcome(caller);
	while (last === "not available" && Date.now() < deadline) {
		await new Promise(r => setTimeout(r, 200));
		last = await outcome(caller);
	}
	expect(last).toBe("ok");
});
