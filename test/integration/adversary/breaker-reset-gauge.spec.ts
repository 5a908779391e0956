/**
 * ADVERSARY: forgetBreakersOf clears the open item's cbTimer, so Moleculer's halfOpen()/close never
 * run for it and the gauge moleculer.circuit-breaker.opened.active{affectedNodeID,action} stays 1
 * after the node came back and is served again (deploy/grafana overview panel shows it open).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { Errors, type ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

useTestEnv({ TRANSPORTER: "nats://127.0.0.1:4222", NAMESPACE: `adv-brg-${Math.random().toString(36).slice(2, 8)}` });
const { ServiceBroker: Broker } = require("moleculer") as typeof import("moleculer");
const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");
jest.setTimeout(60_000);
const NODE = "adv-brg-inventory";
const processes: ChildProcess[] = [];
let caller: ServiceBroker;
let healthy: ServiceBroker | undefined;

async function sickProcess(): Promise<ChildProcess> {
	const code = `
		const { ServiceBroker, Errors } = require("moleculer");
		const b = new ServiceBroker({ nodeID: ${JSON.stringify(NODE)}, namespace: process.env.NAMESPACE, transporter: process.env.TRANSPORTER, logger: false });
		b.createService({ name: "stock", actions: { reserve() {
			throw Object.assign(new Errors.MoleculerError("connect ECONNREFUSED 127.0.0.1:5432", 500, "DB_DOWN"), { name: "SequelizeConnectionRefusedError" });
		} } });
		b.start().then(() => console.log("started"));`;
	const child = spawn(process.execPath, ["-e", code], { cwd: join(__dirname, "../../.."), env: process.env, stdio: ["ignore", "pipe", "inherit"] });
	processes.push(child);
	await new Promise<void>(r => child.stdout!.on("data", (d: Buffer) => d.toString().includes("started") && r()));
	return child;
}
const outcome = async () => caller.call("stock.reserve", {}, { retries: 0 }).then(() => "ok", (e: any) => (e instanceof Errors.ServiceNotAvailableError ? "not available" : e.type));
const gauge = () => {
	const m: any = caller.metrics.getMetric("moleculer.circuit-breaker.opened.active");
	return m ? m.snapshot().map((v: any) => `${v.labels.affectedNodeID}:${v.labels.action}=${v.value}`) : [];
};

afterAll(async () => {
	for (const p of processes) p.kill("SIGKILL");
	await Promise.all([caller?.stop(), healthy?.stop()]);
});

test("the open-breaker gauge goes back to 0 when the breaker is dropped for a new process", async () => {
	const base = brokerOptions({ logger: false });
	caller = new Broker({ ...base, nodeID: "adv-brg-caller", metrics: { enabled: true, reporter: [] }, circuitBreaker: { ...base.circuitBreaker, minRequestCount: 4, halfOpenTime: 60_000 } });
	await Promise.all([caller.start(), sickProcess()]);
	await caller.waitForServices(["stock"], 10_000);
	for (let i = 0; i < 4; i++) await outcome();
	expect(await outcome()).toBe("not available");
	console.log("tripped:", gauge());
	processes[0].kill("SIGKILL");
	await new Promise(r => processes[0].once("exit", r));
	healthy = new Broker({ ...brokerOptions({ logger: false }), nodeID: NODE });
	healthy.createService({ name: "stock", actions: { reserve: () => ({ reserved: true }) } });
	await healthy.start();
	const until = Date.now() + 8_000;
	let last = await outcome();
	while (last !== "ok" && Date.now() < until) { await new Promise(r => setTimeout(r, 200)); last = await outcome(); }
	expect(last).toBe("ok");
	for (let i = 0; i < 5; i++) await outcome();
	console.log("after reset and 6 successful calls:", gauge());
	expect(gauge().filter((g: string) => g.endsWith("=1"))).toEqual([]);
});
