/**
 * Builds a broker with the platform's options and the chosen services.
 */
import { type BrokerOptions, ServiceBroker } from "moleculer";
import { brokerOptions } from "../moleculer.config";
import { drainGatewayOnStop } from "./graceful";
import { availableServices, loadServiceSchema } from "../services";

export function createBroker(services?: string[], overrides: Partial<BrokerOptions> = {}): ServiceBroker {
	const broker = new ServiceBroker(brokerOptions(overrides));
	// SIGTERM: the gateway stops taking requests before the broker waits for those in flight.
	drainGatewayOnStop(broker);
	for (const name of services ?? availableServices()) broker.createService(loadServiceSchema(name));
	return broker;
}
