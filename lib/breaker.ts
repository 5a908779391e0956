/**
 * Circuit breakers forget a node's past when the node comes back as a new process.
 *
 * Moleculer's breaker (broker option `circuitBreaker`, moleculer.config.ts) keeps one state per
 * endpoint, keyed `<nodeID>:<action>`, in `broker.CircuitBreakerStore`. When a node's process goes
 * bad, the faults its callers count (lib/errors.ts countsAgainstHealth: an unreachable database, a
 * retryable error) open a breaker for `halfOpenTime` (10 s). A restarted node keeps its nodeID, so
 * without this middleware its new process inherits the open breakers of the old one: every call to
 * it is refused as "not available" for up to 10 s although it is healthy (the control caller in
 * test/integration/resilience/breaker-restart.spec.ts shows it).
 *
 * So when a node announces a new process, by a new `instanceID` (restarted before its heartbeat
 * timed out: `$node.updated`) or by coming back after it was marked gone (`$node.connected` with
 * `reconnected`), every breaker state of that node is dropped and its endpoints are available
 * again. A new process that is sick trips its breakers anew after `minRequestCount` calls. A node
 * that stays the same process keeps its breakers: only a new process clears them.
 */
import type { Middleware, ServiceBroker } from "moleculer";

/** The part of Moleculer's breaker state this module touches (moleculer/src/middlewares/circuit-breaker.js). */
interface BreakerItem {
	ep?: { id?: string; state?: boolean; node?: { id?: string }; action?: { name?: string } };
	service?: { fullName?: string };
	state?: string;
	cbTimer?: ReturnType<typeof setTimeout> | null;
}

interface NodeEvent {
	node?: { id?: string; instanceID?: string; local?: boolean };
	reconnected?: boolean;
}

/**
 * Drops every breaker state of `nodeID` from the broker's store and makes its endpoints available
 * again; returns how many states were dropped (0 when the breaker is off).
 */
export function forgetBreakersOf(broker: ServiceBroker, nodeID: string): number {
	const store = (broker as unknown as { CircuitBreakerStore?: Map<string, BreakerItem> }).CircuitBreakerStore;
	if (!store) return 0;
	let dropped = 0;
	for (const [key, item] of store) {
		if (item.ep?.node?.id !== nodeID) continue;
		if (item.cbTimer) clearTimeout(item.cbTimer);
		item.cbTimer = null;
		if (item.ep) item.ep.state = true;
		store.delete(key);
		dropped++;
		if (item.state === "close") continue;
		// What Moleculer's own close does (moleculer/src/middlewares/circuit-breaker.js circuitClose):
		// its gauges back to 0 (the Grafana breaker panel) and the `$circuit-breaker.closed` event.
		const labels = { affectedNodeID: item.ep?.id, service: item.service?.fullName, action: item.ep?.action?.name };
		if (broker.isMetricsEnabled()) {
			broker.metrics.set("moleculer.circuit-breaker.opened.active", 0, labels);
			broker.metrics.set("moleculer.circuit-breaker.half-opened.active", 0, labels);
		}
		void broker.broadcast("$circuit-breaker.closed", { nodeID: item.ep?.id, service: labels.service, action: labels.action });
	}
	return dropped;
}

/** The middleware (moleculer.config.ts `middlewares`): see the module's comment. */
export const BreakerResetMiddleware = {
	name: "BreakerReset",
	started(this: unknown, broker: ServiceBroker) {
		// Nodes met while this broker connected announced themselves before this hook ran: their
		// current processes are taken from the registry (adversary finding: a caller started after
		// its callee never noticed the callee's first restart).
		const instances = new Map<string, string | undefined>();
		for (const node of (broker.registry as unknown as { nodes: { toArray(): { id: string; instanceID?: string; local?: boolean }[] } }).nodes.toArray()) {
			if (!node.local) instances.set(node.id, node.instanceID);
		}
		const seen = (e: NodeEvent, restarted: boolean) => {
			const id = e.node?.id;
			if (!id || e.node?.local) return;
			const before = instances.get(id);
			instances.set(id, e.node?.instanceID);
			const newProcess = restarted || (before !== undefined && before !== e.node?.instanceID);
			if (!newProcess) return;
			const dropped = forgetBreakersOf(broker, id);
			if (dropped) broker.logger.info(`Node '${id}' came back as a new process: ${dropped} circuit breaker state(s) of its old process dropped`);
		};
		broker.localBus.on("$node.connected", (e: NodeEvent) => seen(e, e.reconnected === true));
		broker.localBus.on("$node.updated", (e: NodeEvent) => seen(e, false));
	},
} as unknown as Middleware;
