/**
 * Waiting for another service to appear, for background work at start-up (a read model filling
 * itself): polls the registry on timers that never hold the process open, and gives up quietly
 * when the caller stops or the time is up. Moleculer's own `waitForServices` would keep a
 * stopping process (or a test run) alive until its timeout.
 */
import type { ServiceBroker } from "moleculer";

/** true once `name` has an available instance in the cluster; false after `timeoutMs` or once `stopped()` says so. */
export async function serviceAppears(broker: ServiceBroker, name: string, timeoutMs: number, stopped: () => boolean, intervalMs = 500): Promise<boolean> {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		if (stopped()) return false;
		if (broker.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === name)) return true;
		if (Date.now() >= deadline) return false;
		await new Promise(r => setTimeout(r, intervalMs).unref());
	}
}
