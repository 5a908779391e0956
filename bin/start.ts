/**
 * Starts one node: every service in one process (embedded default) or the subset in `SERVICES`
 * (cluster). SIGTERM/SIGINT stop it gracefully: the gateway stops taking requests, in-flight
 * ones finish, databases and the transporter close.
 *
 * With `PORT=0` / `METRICS_PORT=0` the node binds any free port and reports the ports it really
 * bound — in its log line and, when started by a parent with an IPC channel (`npm run cluster`,
 * the test harness), as a `NodeStarted` message — so nobody has to pick a port and bind it later.
 */
import { join } from "node:path";
import type { ServiceBroker } from "moleculer";
import { ConfigError, config } from "../config";
import { createBroker } from "../lib/broker";
import { availableServices } from "../services";

/** What a node sends its parent over IPC once it has started. */
export interface NodeStarted {
	type: "mc:node-started";
	nodeID: string;
	/** The gateway's HTTP port, when this node runs the gateway. */
	httpPort: number | null;
	/** The metrics/health port, when metrics are on. */
	metricsPort: number | null;
}

/** The ports this broker's gateway and metrics server are bound to (0 = any free port resolved). */
export async function boundPorts(broker: ServiceBroker): Promise<{ httpPort: number | null; metricsPort: number | null }> {
	const api: any = broker.getLocalService("api");
	const http = api?.server?.listening ? api.server.address() : null;
	const reporter: any = ((broker as any).metrics?.reporter ?? []).find((r: any) => typeof r.boundPort === "function");
	if (reporter) await reporter.whenListening();
	return { httpPort: http?.port ?? null, metricsPort: reporter?.boundPort() ?? null };
}

async function main(): Promise<void> {
	let c;
	try {
		c = config();
	} catch (err) {
		if (err instanceof ConfigError) {
			console.error(err.message);
			process.exit(78); // EX_CONFIG
		}
		throw err;
	}
	const services = c.SERVICES ?? availableServices();
	const broker = createBroker(services);
	await broker.start();
	const ports = await boundPorts(broker);
	const mode = c.TRANSPORTER ? `cluster node over ${c.TRANSPORTER}` : "embedded (all services, one process)";
	broker.logger.info(`Node ${broker.nodeID} started: ${mode}; services: ${services.join(", ")}`);
	if (ports.httpPort !== null) {
		const host = c.HOST === "0.0.0.0" ? "localhost" : c.HOST;
		broker.logger.info(`Gateway listening on http://${host}:${ports.httpPort}/api/v1 (docs: http://${host}:${ports.httpPort}/api/docs)`);
	}
	if (ports.metricsPort !== null) broker.logger.info(`Metrics and health on http://${c.METRICS_HOST}:${ports.metricsPort} (/metrics, /health/ready)`);
	// Embedded mode generates the admin password on first start: say where it is.
	if (!process.env.ADMIN_PASSWORD && !process.env.ADMIN_PASSWORD_FILE && services.includes("users")) {
		broker.logger.info(`Admin login: ${c.ADMIN_EMAIL}, password in ${join(c.DATA_DIR, ".admin-password")}`);
	}
	if (process.send) {
		const msg: NodeStarted = { type: "mc:node-started", nodeID: broker.nodeID, ...ports };
		process.send(msg);
		// The channel must not keep a stopping node alive.
		process.channel?.unref();
	}
}

if (require.main === module) {
	main().catch(err => {
		console.error("Start-up failed:", err?.message ?? err);
		process.exit(1);
	});
}
