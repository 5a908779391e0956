/**
 * Broker options for every node, embedded or clustered. Each option is set on purpose.
 */
import { hostname } from "node:os";
import type { BrokerOptions } from "moleculer";
import { config } from "./config";
import { countsAgainstHealth, isSafeToRetry } from "./lib/errors";
import { CombinedPrometheusReporter, collectProcessMetrics } from "./lib/metrics";
import { RequestContextMiddleware, currentRequestId } from "./lib/request-context";
import { StrictValidator } from "./lib/validator";

export function brokerOptions(overrides: Partial<BrokerOptions> = {}): BrokerOptions {
	const c = config();
	if (c.METRICS_ENABLED) collectProcessMetrics();

	const logger: BrokerOptions["logger"] =
		c.LOG_FORMAT === "json"
			? {
					type: "Pino",
					options: {
						level: c.LOG_LEVEL,
						pino: {
							// Every line written while a request is handled names its request id.
							options: { mixin: () => ({ requestId: currentRequestId() }) },
						},
					},
				}
			: { type: "Console", options: { level: c.LOG_LEVEL, formatter: "short", colors: process.stdout.isTTY } };

	const options: BrokerOptions = {
		// Separate clusters (staging, tests) can share one NATS server.
		namespace: c.NAMESPACE,
		// Readable in the REPL's `nodes`; unique per process.
		nodeID: c.NODE_ID ?? `${hostname()}-${process.pid}`,
		logger,
		// NATS in a cluster; none (all services in-process) in the embedded default.
		transporter: c.TRANSPORTER
			? { type: "NATS", options: { url: c.TRANSPORTER, maxReconnectAttempts: -1, reconnectTimeWait: 500 } }
			: null,
		// JSON keeps packets readable with `nats sub`; payloads are small.
		serializer: "JSON",
		// A call that has not answered by then fails (RequestTimeoutError) instead of hanging; slow
		// steps (payments) set their own timeout per call.
		requestTimeout: c.REQUEST_TIMEOUT_MS,
		// Retry only what never reached a handler (no node, bulkhead full, transporter down) or
		// says itself that a retry is safe, never a client error (lib/errors.ts isSafeToRetry).
		// Timeouts are not retried here: the call may have taken effect, so only callers holding an
		// idempotency key retry them.
		retryPolicy: { enabled: true, retries: 2, delay: 100, maxDelay: 1000, factor: 2, check: isSafeToRetry },
		// Trip a node's action when half its calls in a 60 s window fail in a way that says the
		// callee is unhealthy — timed out, overloaded, its database unreachable — after at least 10
		// calls; try one call again after 10 s. Client errors and plain 500s never count, so no
		// client can open it for everyone (lib/errors.ts countsAgainstHealth). Must be enabled here:
		// the failure window only runs when the broker-level breaker is on.
		circuitBreaker: { enabled: true, threshold: 0.5, minRequestCount: 10, windowTime: 60, halfOpenTime: 10_000, check: countsAgainstHealth },
		// At most 64 concurrent calls per action on a node, 1000 queued; past that callers get a
		// fast QueueIsFullError (retryable on another node) rather than unbounded latency.
		bulkhead: { enabled: true, concurrency: 64, maxQueueSize: 1000 },
		// A dead node is noticed within 10 s of its last heartbeat and its calls go elsewhere.
		heartbeatInterval: 3,
		heartbeatTimeout: 10,
		// Graceful shutdown waits for in-flight requests before leaving the cluster.
		tracking: { enabled: true, shutdownTimeout: c.SHUTDOWN_TIMEOUT_MS },
		// Local endpoints first: in the embedded default no call leaves the process.
		registry: { strategy: "RoundRobin", preferLocal: true },
		// Handlers do not mutate params; cloning would cost on every call.
		contextParamsCloning: false,
		// A runaway call chain stops rather than looping forever.
		maxCallLevel: 20,
		// Unknown parameters are refused: no mass assignment through any action.
		validator: new (StrictValidator as any)() as any,
		// One endpoint per node with Moleculer's and prom-client's metrics.
		metrics: c.METRICS_ENABLED
			? {
					enabled: true,
					reporter: [new (CombinedPrometheusReporter as any)({ port: c.METRICS_PORT, path: "/metrics" })],
				}
			: false,
		// Spans go to Jaeger when an endpoint (collector HTTP) or agent (UDP) is configured.
		tracing:
			c.JAEGER_ENDPOINT || c.JAEGER_AGENT_HOST
				? {
						enabled: true,
						events: true,
						stackTrace: false,
						exporter: {
							type: "Jaeger",
							options: {
								endpoint: c.JAEGER_ENDPOINT,
								host: c.JAEGER_AGENT_HOST ?? "127.0.0.1",
								port: c.JAEGER_AGENT_PORT,
								tracerOptions: {},
								defaultTags: { namespace: c.NAMESPACE || "default" },
							},
						},
					}
				: false,
		middlewares: [RequestContextMiddleware],
		...overrides,
	};
	return options;
}

export default brokerOptions;
