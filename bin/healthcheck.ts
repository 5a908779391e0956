/**
 * Container health check (Dockerfile HEALTHCHECK, stack file): exit 0 when this node answers.
 * A node running the gateway must answer GET /health/live on PORT; any other node its metrics
 * endpoint on METRICS_PORT. It reads the environment directly rather than the config module,
 * which would create secret files as a side effect. No dependencies, so it starts in ~50 ms.
 */
import { request } from "node:http";

const TIMEOUT_MS = 3000;

function probe(port: number, path: string): Promise<number> {
	return new Promise((resolve, reject) => {
		const req = request({ host: "127.0.0.1", port, path, method: "GET", timeout: TIMEOUT_MS }, res => {
			res.resume();
			res.on("end", () => resolve(res.statusCode ?? 0));
		});
		req.on("timeout", () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
		req.on("error", reject);
		req.end();
	});
}

export function target(env: NodeJS.ProcessEnv): { port: number; path: string } | undefined {
	const services = env.SERVICES?.split(",").map(s => s.trim()).filter(Boolean);
	// No SERVICES means every service in one process, the gateway included.
	if (!services?.length || services.includes("api")) return { port: Number(env.PORT || 3000), path: "/health/live" };
	if (!/^(false|0|no)$/i.test(env.METRICS_ENABLED ?? "")) return { port: Number(env.METRICS_PORT || 3030), path: "/metrics" };
	return undefined;
}

async function main(): Promise<void> {
	const t = target(process.env);
	if (!t) {
		// Nothing to ask: the process being alive (the container running) is all we can tell.
		console.log("healthcheck: no HTTP endpoint on this node (METRICS_ENABLED=false); assuming healthy");
		return;
	}
	const status = await probe(t.port, t.path);
	if (status !== 200) throw new Error(`GET ${t.path} on port ${t.port} answered ${status}`);
}

if (require.main === module) {
	main().catch(err => {
		console.error(`healthcheck: unhealthy: ${err.message}`);
		process.exit(1);
	});
}
