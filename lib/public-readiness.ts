/**
 * What an anonymous client learns from the gateway's `GET /health/ready` (API.md "Health and
 * operations": 200 when ready, else 503 with what is down): the status and the *names* of what
 * is down or degraded, nothing else. The full report of lib/readiness.ts (node id, the services
 * this node runs, each check's own message, which may hold hosts, addresses, ports or driver
 * errors) is for operators: the node's metrics port (`/health/ready` on METRICS_HOST, lib/metrics.ts),
 * the REPL (`call api.ready`) and the logs.
 */

/** The readiness report as lib/readiness.ts makes it (`degraded` where a check reports one). */
export interface ReadinessLines {
	status: "ok" | "unavailable";
	down: string[];
	degraded?: string[];
}

/** The public answer: `{ status, down, degraded }`, each entry a name only. */
export interface PublicReadiness {
	status: "ok" | "unavailable";
	down: string[];
	degraded: string[];
}

/**
 * A line's name: a check reports `name: what happened` (lib/readiness.ts), the built-in lines are
 * names already (`transporter`, `orders:database`, `needs:payments`).
 */
const nameOf = (line: string) => String(line).split(": ")[0].trim();

const names = (lines: unknown) => (Array.isArray(lines) ? [...new Set(lines.map(l => nameOf(String(l))))].sort() : []);

/** The report reduced to what anyone may see. Pure. */
export function publicReadiness(report: ReadinessLines): PublicReadiness {
	return { status: report.status === "ok" ? "ok" : "unavailable", down: names(report.down), degraded: names(report.degraded) };
}
