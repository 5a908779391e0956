/**
 * One bus per broker, shared by its outbox relays, its consumer groups and its `$events` service:
 * NATS JetStream when the node is in a cluster (TRANSPORTER set), in process otherwise.
 */
import type { ServiceBroker } from "moleculer";
import { config } from "../../config";
import { JetStreamBus } from "./jetstream-bus";
import { LocalBus } from "./local-bus";
import type { Bus } from "./types";

const buses = new WeakMap<ServiceBroker, Bus>();

export function busFor(broker: ServiceBroker): Bus {
	let bus = buses.get(broker);
	if (!bus) {
		const c = config();
		bus = c.TRANSPORTER ? new JetStreamBus(broker, c.TRANSPORTER, c.NAMESPACE) : new LocalBus();
		buses.set(broker, bus);
	}
	return bus;
}

export * from "./types";
