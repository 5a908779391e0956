/**
 * `npm run seed`: loads the demo catalog (and demo stock, when the warehouse runs) into a running
 * cluster. Joins it as a short-lived node, calls the services' own idempotent seed actions, and
 * leaves; running it twice changes nothing the second time.
 */
import { ConfigError, config } from "../config";
import { SYSTEM_USER } from "../lib/access";
import { createBroker } from "../lib/broker";

async function main(): Promise<void> {
	let c;
	try {
		c = config();
	} catch (err) {
		if (err instanceof ConfigError) {
			console.error(err.message);
			process.exit(78);
		}
		throw err;
	}
	if (!c.TRANSPORTER) {
		console.error("npm run seed joins a cluster: set TRANSPORTER (e.g. nats://127.0.0.1:4222). The embedded default seeds itself on first start.");
		process.exit(64);
	}
	const broker = createBroker([], { nodeID: `seed-${process.pid}`, metrics: false, logLevel: "warn" });
	await broker.start();
	try {
		await broker.waitForServices(["catalog"], 60_000);
		const meta = { user: SYSTEM_USER };
		const catalog = await broker.call("catalog.seedDemo", {}, { meta, timeout: 120_000 });
		console.log("catalog:", JSON.stringify(catalog));
		// The warehouse is optional; when it runs, a failure to seed it is a failure of the seed.
		const warehouse = await broker.waitForServices(["warehouse"], 5_000).then(
			() => true,
			() => false,
		);
		if (warehouse) console.log("warehouse:", JSON.stringify(await broker.call("warehouse.seedDemo", {}, { meta, timeout: 120_000 })));
		else console.log("warehouse: not running in this cluster, no stock seeded");
	} finally {
		await broker.stop();
	}
}

main().catch(err => {
	console.error("Seeding failed:", err?.message ?? err);
	process.exit(1);
});
