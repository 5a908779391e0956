/**
 * Circuit breakers forget a node's past when the node comes back as a new process.
 *
 * Moleculer's breaker (broker option `circuitBreaker`, moleculer.config.ts) keeps one state per
 * endpoint, keyed `<nodeID>:<action>`, in `broker.CircuitBreakerStore`. When a node is killed its
 * callers' calls time out, and a breaker opens for `halfOpenTime` (10 s). A restarted node keeps
 * its nodeID, so without this middleware its new process inherits the open breakers of the dead
 * one: every call to it is refused as "not available" for up to 10 s, and each checkout in that
 * window is compensated and REJECTED although the node is healthy again (seen in the
 * crash-recovery e2e test, issue 7).
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
	ep?: { state?: boolean; node?: { id?: string } };
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
	}
	return dropped;
}

/** The middleware (moleculer.config.ts `middlewares`): see the module's comment. */
export const BreakerResetMiddleware = {
	name: "BreakerReset",
	started(this: unknown, broker: ServiceBroker) {
		const instances = new Map<string, string | undefined>();
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
