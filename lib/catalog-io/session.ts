/**
 * The broker behind `npm run import` / `npm run export`: with TRANSPORTER set it joins the
 * cluster as a node without services (as `npm run seed` does) and calls the running catalog and
 * warehouse; without it, it runs the catalog, the warehouse and the services that follow their
 * events (search, shipping) itself, embedded, on the SQLite files of DATA_DIR — and before it
 * stops, waits until their events have reached those services.
 */
import type { ServiceBroker } from "moleculer";
import { ConfigError, config } from "../../config";
import { availableServices, loadServiceSchema } from "../../services";
import { createBroker } from "../broker";
import { type CatalogueClient, brokerClient } from "./client";

export interface Session {
	mode: "cluster" | "embedded";
	client: CatalogueClient;
	broker: ServiceBroker;
	/** Waits for the embedded services' events to be applied (up to `drainMs`), then stops the broker. */
	close(drainMs?: number): Promise<void>;
}

/** The services whose data the files hold. */
const OWNERS = ["catalog", "warehouse"];

/** In embedded mode: the owners and every service in the build that consumes their events. */
export function embeddedServices(): string[] {
	const available = availableServices();
	const consumers = available.filter(name => {
		if (OWNERS.includes(name)) return false;
		const subscriptions = Object.keys((loadServiceSchema(name) as { subscriptions?: Record<string, unknown> }).subscriptions ?? {});
		return subscriptions.some(e => OWNERS.some(o => e.startsWith(`${o}.`)));
	});
	return [...OWNERS.filter(o => available.includes(o)), ...consumers];
}

/**
 * Opens the session. Call before anything reads the configuration: in embedded mode the demo
 * data stays out (SEED_DEMO=false unless set) and no metrics port is opened beside a running node.
 */
export async function openSession(name: string, log: (line: string) => void = () => undefined): Promise<Session> {
	const embedded = !process.env.TRANSPORTER;
	if (embedded) {
		// An empty value means "not set" to the configuration, which would default to the demo data here.
		if (!process.env.SEED_DEMO) process.env.SEED_DEMO = "false";
		process.env.METRICS_ENABLED = "false";
	}
	if (!process.env.LOG_LEVEL) process.env.LOG_LEVEL = "warn";
	const c = config();
	const services = embedded ? embeddedServices() : [];
	const broker = createBroker(services, { nodeID: `${name}-${process.pid}`, metrics: false, tracing: false, logLevel: c.LOG_LEVEL });
	await broker.start();
	const client = brokerClient(broker);
	if (embedded) log(`Embedded: ${services.join(", ")} on ${c.DATABASE_URL ? "PostgreSQL" : `the SQLite files in ${c.DATA_DIR}`}`);
	else {
		log(`Joining ${c.TRANSPORTER} (namespace '${c.NAMESPACE}')...`);
		if (!(await client.has("catalog", 60_000))) {
			await broker.stop();
			throw new Error("No catalog service answered in the cluster within 60 s (check TRANSPORTER and NAMESPACE)");
		}
	}
	return {
		mode: embedded ? "embedded" : "cluster",
		client,
		broker,
		async close(drainMs = 120_000) {
			try {
				if (embedded) await drainOutboxes(broker, drainMs, log);
			} finally {
				await broker.stop();
			}
		},
	};
}

/** Waits until the local outboxes hold no PENDING event (applied by the local consumers), or `ms` passed. */
async function drainOutboxes(broker: ServiceBroker, ms: number, log: (line: string) => void): Promise<void> {
	const deadline = Date.now() + ms;
	let told = false;
	for (;;) {
		const status: { outboxes: Record<string, Record<string, number>> } = await broker.call("$events.status");
		const pending = Object.values(status.outboxes).reduce((n, counts) => n + (counts.PENDING ?? 0), 0);
		if (!pending) return;
		if (Date.now() > deadline) {
			log(`${pending} events still waiting for delivery; the next start of the services delivers them`);
			return;
		}
		if (!told) log(`Delivering ${pending} events to ${embeddedServices().filter(s => !OWNERS.includes(s)).join(", ") || "their consumers"}...`);
		told = true;
		await new Promise(r => setTimeout(r, 200));
	}
}

/**
 * Runs a command-line entry point (`main` resolves to its exit status) and exits with it. A bad
 * configuration exits 78 (EX_CONFIG) with the variable named; any other failure prints
 * `<label> failed: <message>` and exits with `codeOf(err)` (default 1).
 */
export function runCommand(main: () => Promise<number>, label: string, codeOf: (err: any) => number = () => 1): void {
	main().then(
		code => process.exit(code),
		err => {
			if (err instanceof ConfigError) {
				console.error(err.message);
				process.exit(78);
			}
			console.error(`${label} failed:`, err?.message ?? err);
			process.exit(codeOf(err));
		},
	);
}
