/**
 * Container health check (Dockerfile HEALTHCHECK, stack file): exit 0 when this node is ready.
 * Every node answers GET /health/ready on its metrics port (lib/readiness.ts: started, transporter
 * connected, its databases answering, the services it needs present); a gateway whose metrics
 * are off is asked on its HTTP port. So Swarm's start-first update keeps the old task until the
 * new one can serve, and rolls back one that never can. It reads the environment directly rather
 * than the config module, which would create secret files as a side effect. No dependencies, so
 * it starts in ~50 ms.
 */
import { request } from "node:http";

const TIMEOUT_MS = 3000;

function probe(host: string, port: number, path: string): Promise<{ status: number; body: string }> {
	return new Promise((resolve, reject) => {
		const req = request({ host, port, path, method: "GET", timeout: TIMEOUT_MS }, res => {
			let body = "";
			res.setEncoding("utf8");
			res.on("data", d => (body += d));
			res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
		});
		req.on("timeout", () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
		req.on("error", reject);
		req.end();
	});
}

/** Where this node's readiness is answered, or undefined when it serves no HTTP at all. */
export function target(env: NodeJS.ProcessEnv): { host: string; port: number; path: string } | undefined {
	const metricsOn = !/^(false|0|no)$/i.test(env.METRICS_ENABLED ?? "");
	if (metricsOn) {
		const host = env.METRICS_HOST || "127.0.0.1";
		// A wildcard bind answers on loopback too.
		return { host: host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host, port: Number(env.METRICS_PORT || 3030), path: "/health/ready" };
	}
	const services = env.SERVICES?.split(",").map(s => s.trim()).filter(Boolean);
	// No SERVICES means every service in one process, the gateway included.
	if (!services?.length || services.includes("api")) return { host: "127.0.0.1", port: Number(env.PORT || 3000), path: "/health/ready" };
	return undefined;
}

async function main(): Promise<void> {
	const t = target(process.env);
	if (!t) {
		// Nothing to ask: the process being alive (the container running) is all we can tell.
		console.log("healthcheck: no HTTP endpoint on this node (METRICS_ENABLED=false, no gateway); assuming healthy");
		return;
	}
	const { status, body } = await probe(t.host, t.port, t.path);
	if (status !== 200) throw new Error(`GET ${t.path} on ${t.host}:${t.port} answered ${status}: ${body.slice(0, 300)}`);
}

if (require.main === module) {
	main().catch(err => {
		console.error(`healthcheck: unhealthy: ${err.message}`);
		process.exit(1);
	});
}
