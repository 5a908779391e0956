/**
 * Event metrics on the node's Prometheus endpoint (lib/metrics.ts registry). Registered once per
 * process however many brokers run in it.
 */
import { Counter } from "prom-client";
import { promRegistry } from "../metrics";

function counter(name: string, help: string, labelNames: string[]): Counter<string> {
	const existing = promRegistry.getSingleMetric(name);
	if (existing) return existing as Counter<string>;
	return new Counter({ name, help, labelNames, registers: [promRegistry] });
}

export const eventMetrics = {
	published: counter("events_published_total", "Outbox events handed to the bus", ["service", "event"]),
	publishFailures: counter("events_publish_failures_total", "Outbox relay attempts that did not reach the bus or a local consumer", ["service", "event"]),
	consumed: counter("events_consumed_total", "Events seen by a consumer group, by result (applied, duplicate, ignored)", ["group", "event", "result"]),
	handlerFailures: counter("events_handler_failures_total", "Consumer handler failures (each is retried or dead-lettered)", ["group", "event"]),
	deadLettered: counter("events_dead_lettered_total", "Events moved to the dead letters after the last attempt", ["group", "event"]),
	replayed: counter("events_replayed_total", "Dead letters replayed by an operator", ["event"]),
};
