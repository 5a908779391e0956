/**
 * One Prometheus endpoint per node: Moleculer's own metrics (actions, transit, circuit
 * breakers) followed by prom-client's process metrics (event-loop lag, GC, heap) and the
 * business metrics the services register.
 */
import { MetricReporters } from "moleculer";
import { Registry, collectDefaultMetrics } from "prom-client";

export const promRegistry = new Registry();
let defaultsCollected = false;

export function collectProcessMetrics(): void {
	if (defaultsCollected) return;
	defaultsCollected = true;
	collectDefaultMetrics({ register: promRegistry, eventLoopMonitoringPrecision: 20 });
}

const PrometheusBase = MetricReporters.Prometheus as any;

export class CombinedPrometheusReporter extends PrometheusBase {
	declare opts: { path: string };
	declare logger: { error(...args: unknown[]): void };
	declare generatePrometheusResponse: () => string;

	handler(req: any, res: any): void {
		if (req.url !== this.opts.path) {
			res.writeHead(404);
			res.end();
			return;
		}
		promRegistry
			.metrics()
			.then((extra: string) => {
				res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
				res.end(`${this.generatePrometheusResponse()}\n${extra}`);
			})
			.catch((err: Error) => {
				this.logger.error("Unable to generate the metrics response", err);
				res.writeHead(503);
				res.end();
			});
	}
}
