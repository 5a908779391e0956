/**
 * Broker options for every node, embedded or clustered. Each option is set on purpose.
 */
import { hostname } from "node:os";
import { RemoteCacheMiddleware, cacherFor } from "./lib/cache";
import type { BrokerOptions } from "moleculer";
import { config } from "./config";
import { BreakerResetMiddleware } from "./lib/breaker";
import { countsAgainstHealth, isSafeToRetry } from "./lib/errors";
import { FaultHangMiddleware } from "./lib/faults";
import { RemoteCallDeadlineMiddleware } from "./lib/graceful";
import { BusinessMetricsMiddleware, CombinedPrometheusReporter, collectProcessMetrics } from "./lib/metrics";
import { natsAuthOptions, natsServers } from "./lib/nats-options";
import { RequestContextMiddleware, currentRequestId } from "./lib/request-context";
import { SPAN_ERROR_FIELDS, spanTags } from "./lib/tracing";
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
		// NATS in a cluster, with the cluster's credentials and TLS (lib/nats-options.ts); none (all
		// services in-process) in the embedded default.
		transporter: c.TRANSPORTER
			? { type: "NATS", options: { servers: natsServers(c.TRANSPORTER), maxReconnectAttempts: -1, reconnectTimeWait: 500, ...natsAuthOptions(c) } }
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
		// Trip a node's action when half its calls in a 10 s window fail in a way that says the
		// callee is unhealthy — timed out, overloaded, its database unreachable — after at least 10
		// calls; try one call again after 10 s. The window is Hystrix's default rolling window (10 s).
		// Moleculer's window is fixed (all counts reset every windowTime): with 60 s, a replica that
		// hung after a busy minute needed as many timeouts as it had answered before it was isolated,
		// so half the checkouts waited a step timeout for up to a minute; now at most 10 s plus the
		// step's timeout (test/e2e/adversary/inventory-hung-replica.spec.ts). Client errors and plain 500s never count, so no
		// client can open it for everyone (lib/errors.ts countsAgainstHealth). Must be enabled here:
		// the failure window only runs when the broker-level breaker is on.
		circuitBreaker: { enabled: true, threshold: 0.5, minRequestCount: 10, windowTime: 10, halfOpenTime: 10_000, check: countsAgainstHealth },
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
		// One endpoint per node: Moleculer's and prom-client's metrics and /health/*, on the configured
		// interface only, behind a token or basic auth when set (lib/metrics.ts).
		metrics: c.METRICS_ENABLED
			? {
					enabled: true,
					reporter: [
						new (CombinedPrometheusReporter as any)({ port: c.METRICS_PORT, host: c.METRICS_HOST, token: c.METRICS_AUTH_TOKEN, basicAuth: c.METRICS_BASIC_AUTH }),
					],
				}
			: false,
		// Spans go to a Zipkin v2 collector (Jaeger takes them on 9411) when ZIPKIN_URL is set.
		tracing: c.ZIPKIN_URL ? tracingOptions({ type: "Zipkin", options: { baseURL: c.ZIPKIN_URL, interval: 5, defaultTags: { namespace: c.NAMESPACE || "default" } } }) : false,
		// Read cache (lib/cache.ts): in-memory LRU by default, Redis with CACHER=redis://…, none with CACHER=off.
		cacher: cacherFor(c.CACHER, c.NAMESPACE) as BrokerOptions["cacher"],
		// Request ids in JSON log lines (text logs do not print them: no scope per call then);
		// checkout latency and outcome when metrics are on (lib/metrics.ts); a timed-out remote call
		// releases its context, so a stop never waits for calls nobody awaits (lib/graceful.ts);
		// cached reads answered on the calling side (lib/cache.ts); a node back as a new process starts
		// with closed breakers (lib/breaker.ts). A middleware that is off is not in the chain at all.
		middlewares: [
			...(c.LOG_FORMAT === "json" ? [RequestContextMiddleware] : []),
			...(c.METRICS_ENABLED ? [BusinessMetricsMiddleware] : []),
			RemoteCallDeadlineMiddleware,
			RemoteCacheMiddleware,
			BreakerResetMiddleware,
			// Test-only `hang:` fault points (lib/faults.ts); never in the chain otherwise.
			...(c.TEST_FAULTS || c.TEST_FAULTS_FILE ? [FaultHangMiddleware] : []),
		],
		...overrides,
	};
	return options;
}

/**
 * Tracing for every action and event, with `exporter` (Zipkin in production, an in-memory one in
 * tests): params and a few meta fields with secrets redacted, order and saga ids, no responses and
 * no error data (lib/tracing.ts).
 */
export function tracingOptions(exporter: unknown): NonNullable<BrokerOptions["tracing"]> {
	return {
		enabled: true,
		events: true,
		stackTrace: false,
		errorFields: SPAN_ERROR_FIELDS,
		tags: { action: spanTags as any, event: spanTags as any },
		exporter: exporter as any,
	} as NonNullable<BrokerOptions["tracing"]>;
}

export default brokerOptions;
