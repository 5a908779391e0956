/**
 * Readiness of one node (API.md "Health and operations"): answered by every node on its metrics
 * port (`/health/ready`) and by gateways on their HTTP port too. A node is ready when it has
 * started, its transporter is connected, each of its services' own databases answers, and the
 * services its own services cannot work without are reachable in the cluster (a gateway needs
 * none: public reads work while identity is down). The container
 * health check (bin/healthcheck.ts) asks this, so Swarm's start-first update only retires the old
 * task once the new one is really able to serve, and rolls back one that never is.
 *
 * Other parts add their own lines with `addReadinessCheck`. A check may instead report something
 * as degraded (`{ degraded }`: e.g. the read cache's Redis is away and reads go uncached): listed
 * under `degraded`, the node stays ready.
 */
import type { ServiceBroker } from "moleculer";

export interface ReadinessReport {
	status: "ok" | "unavailable";
	nodeID: string;
	services: string[];
	/** What is down: `starting`, `stopping`, `transporter`, `<service>:database`, `needs:<service>`, or a check's own name. */
	down: string[];
	/** What works in a lesser way without making the node unready (e.g. `cache`: reads answer uncached). */
	degraded: string[];
}

type CheckResult = string | void | { degraded: string };
/** Resolves with nothing when fine; throws (or resolves with a reason) when down; `{ degraded }` when degraded. */
export type ReadinessCheck = () => Promise<CheckResult> | CheckResult;

/**
 * Services a service cannot answer any request without (calls on every request or every
 * checkout), from docs/INTERNAL-ACTIONS.md. Optional dependencies (reads that degrade, events)
 * are not listed: a node stays ready while they are down.
 */
export const NEEDS: Record<string, string[]> = {
	orders: ["payments", "warehouse", "fulfillment"],
};

/** How long one database probe may take before its service counts as down. */
const PROBE_TIMEOUT_MS = 2000;

const extraChecks = new WeakMap<ServiceBroker, Map<string, ReadinessCheck>>();

/** Adds a named line to this broker's readiness (the hook for e.g. a cacher); returns its remover. */
export function addReadinessCheck(broker: ServiceBroker, name: string, check: ReadinessCheck): () => void {
	let checks = extraChecks.get(broker);
	if (!checks) extraChecks.set(broker, (checks = new Map()));
	checks.set(name, check);
	return () => checks.delete(name);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
	let timer: NodeJS.Timeout | undefined;
	const timeout = new Promise<never>((_, reject) => {
		timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
	});
	return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** This node's readiness, each problem named; never throws. */
export async function readiness(broker: ServiceBroker): Promise<ReadinessReport> {
	const b = broker as any;
	const down: string[] = [];
	const degraded: string[] = [];
	if (b.stopping) down.push("stopping");
	else if (!b.started) down.push("starting");
	if (b.transit && !b.transit.connected) down.push("transporter");
	const services = (b.services as any[]).filter(s => !s.name.startsWith("$"));
	const probes = services
		.filter(s => s.sequelize)
		.map(async s => {
			try {
				await withTimeout(s.sequelize.query("SELECT 1"), PROBE_TIMEOUT_MS);
			} catch (err) {
				down.push(`${s.name}:database`);
				broker.logger.warn(`Readiness: ${s.name} database unreachable: ${(err as Error).message}`);
			}
		});
	const checks = [...(extraChecks.get(broker) ?? new Map<string, ReadinessCheck>()).entries()].map(async ([name, check]) => {
		try {
			const problem = await withTimeout(Promise.resolve(check()), PROBE_TIMEOUT_MS);
			if (problem && typeof problem === "object") degraded.push(problem.degraded);
			else if (problem) down.push(`${name}: ${problem}`);
		} catch (err) {
			down.push(name);
			broker.logger.warn(`Readiness: ${name} failed: ${(err as Error).message}`);
		}
	});
	await Promise.all([...probes, ...checks]);
	const local = new Set(services.map(s => s.name));
	const needed = new Set(services.flatMap(s => NEEDS[s.name] ?? []));
	for (const name of [...needed].sort()) {
		if (!local.has(name) && !(broker.registry as any).hasService(name)) down.push(`needs:${name}`);
	}
	return { status: down.length ? "unavailable" : "ok", nodeID: broker.nodeID, services: services.map(s => s.name), down: down.sort(), degraded: degraded.sort() };
}
