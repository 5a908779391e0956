/**
 * Child process of crash.spec.ts: records one event, and dies (SIGKILL through
 * TEST_FAULTS=kill:outbox.afterCommit) right after the commit, before the relay can publish it.
 */
import { ServiceBroker } from "moleculer";
import { brokerOptions } from "../../../moleculer.config";
import { consumerService, producerService } from "./helpers";

async function main(): Promise<void> {
	const broker = new ServiceBroker(brokerOptions({ logger: false, nodeID: `crash-${process.pid}` }));
	broker.createService(producerService());
	if (process.env.WITH_CONSUMER === "1") broker.createService(consumerService());
	await broker.start();
	await broker.call("evshop.place", { orderId: process.env.ORDER_ID });
	// Reached only if the fault did not fire.
	await broker.stop();
	process.exit(3);
}

main().catch(err => {
	console.error(err);
	process.exit(2);
});
