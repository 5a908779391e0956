/**
 * Starts one node: every service in one process (embedded default) or the subset in `SERVICES`
 * (cluster). SIGTERM/SIGINT stop it gracefully: the gateway stops taking requests, in-flight
 * ones finish, databases and the transporter close.
 */
import { ConfigError, config } from "../config";
import { createBroker } from "../lib/broker";
import { availableServices } from "../services";

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
	const mode = c.TRANSPORTER ? `cluster node over ${c.TRANSPORTER}` : "embedded (all services, one process)";
	broker.logger.info(`Node ${broker.nodeID} started: ${mode}; services: ${services.join(", ")}`);
	if (services.includes("api")) {
		const host = c.HOST === "0.0.0.0" ? "localhost" : c.HOST;
		broker.logger.info(`Gateway listening on http://${host}:${c.PORT}/api/v1 (docs: http://${host}:${c.PORT}/api/docs)`);
	}
}

main().catch(err => {
	console.error("Start-up failed:", err?.message ?? err);
	process.exit(1);
});
