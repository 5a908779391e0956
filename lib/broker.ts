/**
 * Builds a broker with the platform's options and the chosen services.
 */
import { type BrokerOptions, ServiceBroker } from "moleculer";
import { brokerOptions } from "../moleculer.config";
import { availableServices, loadServiceSchema } from "../services";

export function createBroker(services?: string[], overrides: Partial<BrokerOptions> = {}): ServiceBroker {
	const broker = new ServiceBroker(brokerOptions(overrides));
	for (const name of services ?? availableServices()) broker.createService(loadServiceSchema(name));
	return broker;
}
