/**
 * Metrics and the node's operations endpoint.
 *
 * One HTTP server per node (`METRICS_HOST`:`METRICS_PORT`) answers:
 *   GET /metrics       Prometheus text: Moleculer's metrics (requests, errors and latency per
 *                      action, transit, circuit breakers, bulkheads), prom-client's process metrics
 *                      (event-loop lag, GC, heap) and the platform's own, defined below. Behind a
 *                      bearer token (`METRICS_AUTH_TOKEN`) or basic auth (`METRICS_BASIC_AUTH`) when set.
 *   GET /health/live   200 while the process runs.
 *   GET /health/ready  this node's readiness (lib/readiness.ts): 200, or 503 naming what is down.
 * It binds only the configured interface (loopback by default) and leaves out Moleculer's metrics
 * that describe the host (hostname, user, network addresses, OS release, process arguments).
 *
 * Libraries: prom-client (metric types, registry, process metrics), Moleculer's Prometheus
 * reporter (its own metrics in text format). Services record events with the small helpers
 * below; gauges read from databases and the bus are refreshed here, at scrape time, from what
 * each local service already exposes (its Sequelize pool, saga tables, outbox, the bus status).
 */
import { timingSafeEqual } from "node:crypto";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { MetricReporters, type Middleware, type ServiceBroker } from "moleculer";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { runningContexts } from "./graceful";
import { readiness } from "./readiness";

export const promRegistry = new Registry();
let defaultsCollected = false;

/**
 * prom-client's process metrics (nodejs_*, process_*). The event-loop lag is sampled every 100 ms
 * (perf_hooks.monitorEventLoopDelay): each sample is a timer wake-up of an otherwise idle process,
 * and at 20 ms those wake-ups alone cost an idle node about 4 ms of CPU per second on this
 * project's VMs (a bare Node process: 7.5 against 5.1 ms/s at 100 ms). Ten samples a second still
 * give the dashboard's lag p99 (deploy/grafana) about 150 samples per 15 s scrape.
 */
export function collectProcessMetrics(): void {
	if (defaultsCollected) return;
	defaultsCollected = true;
	collectDefaultMetrics({ register: promRegistry, eventLoopMonitoringPrecision: 100 });
}

// ---- definitions (registered once per process, however many brokers run in it) -------------

function counter(name: string, help: string, labelNames: string[] = []): Counter<string> {
	return (promRegistry.getSingleMetric(name) as Counter<string>) ?? new Counter({ name, help, labelNames, registers: [promRegistry] });
}
function gauge(name: string, help: string, labelNames: string[] = []): Gauge<string> {
	return (promRegistry.getSingleMetric(name) as Gauge<string>) ?? new Gauge({ name, help, labelNames, registers: [promRegistry] });
}
function histogram(name: string, help: string, labelNames: string[], buckets: number[]): Histogram<string> {
	return (promRegistry.getSingleMetric(name) as Histogram<string>) ?? new Histogram({ name, help, labelNames, buckets, registers: [promRegistry] });
}

/** Latency buckets in seconds, 5 ms … 10 s (the checkout target is p99 < 250 ms, README). */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The gateway's answers, by the route's pattern (not the raw URL: ids would explode the label set). */
export const httpMetrics = {
	requests: counter("gateway_http_requests_total", "HTTP requests answered by the gateway, by method, route pattern and status", ["method", "route", "status"]),
	duration: histogram("gateway_http_request_duration_seconds", "Gateway answer time in seconds, by method, route pattern and status class", ["method", "route", "status_class"], LATENCY_BUCKETS),
};

export const businessMetrics = {
	checkoutDuration: histogram("checkout_duration_seconds", "Time from POST /orders to its answer, by outcome (CONFIRMED, REJECTED, PENDING, error)", ["outcome"], LATENCY_BUCKETS),
	checkouts: counter("checkouts_total", "Checkout answers by outcome and failure reason (API.md order statuses)", ["outcome", "reason"]),
	paymentDeclines: counter("payment_declines_total", "Authorisations the provider declined, by reason", ["reason"]),
	refunds: counter("refunds_total", "Refunds made at the provider, by currency", ["currency"]),
	refundedCents: counter("refunded_amount_cents_total", "Money refunded, in cents (minor units), by currency", ["currency"]),
};

/** The payments reconciler (services/commerce/payments-reconciler.mixin.ts): repairs made and repairs that failed, by action. */
export const reconcilerMetrics = {
	repairs: counter("payment_reconciler_repairs_total", "Payments repaired by the reconciler, by action (void, refund, cancel-order)", ["action"]),
	failures: counter("payment_reconciler_failures_total", "Payment repairs that failed (tried again at the next pass), by action", ["action"]),
};

/** A decline by the payment provider (payments.authorize); `reason` is the error type (PAYMENT_DECLINED, INSUFFICIENT_FUNDS). */
export function recordPaymentDecline(reason: string): void {
	businessMetrics.paymentDeclines.inc({ reason });
}

/** A refund the provider accepted: `amount` in cents. */
export function recordRefund(amount: number, currency: string): void {
	businessMetrics.refunds.inc({ currency });
	businessMetrics.refundedCents.inc({ currency }, amount);
}

/** Gauges refreshed at scrape time (see `refreshScrapeGauges`). */
export const stateGauges = {
	nodeReady: gauge("node_ready", "1 when this node answers /health/ready with 200, else 0"),
	runningContexts: gauge("node_running_contexts", "Calls this node is running or waiting for (Moleculer's tracked contexts): what a stop waits for; 0 when idle"),
	sagas: gauge("saga_instances", "Sagas by name and status, in the owning service's database (every replica reports the same: use max)", ["service", "saga", "status"]),
	ordersByStatus: gauge("orders_by_status", "Orders by status and failure reason, in the orders database (use max over replicas)", ["status", "reason"]),
	outboxEvents: gauge("outbox_events", "Outbox rows by producing service and state (PENDING, DEAD, PUBLISHED)", ["service", "state"]),
	outboxOldestPending: gauge("outbox_oldest_pending_age_seconds", "Age of the oldest PENDING outbox event, 0 when none", ["service"]),
	jetstreamPending: gauge("jetstream_consumer_pending_messages", "Messages not yet delivered to a consumer group, per event (use max over nodes)", ["group", "event"]),
	jetstreamAckPending: gauge("jetstream_consumer_ack_pending_messages", "Messages delivered to a consumer group and not yet acknowledged", ["group", "event"]),
	jetstreamDeadLetters: gauge("jetstream_dead_letters", "Messages in the dead-letter stream (use max over nodes)"),
	dbPool: gauge("db_pool_connections", "Database pool connections per service, by state (using, available, waiting, max)", ["service", "state"]),
	scrapeErrors: counter("metrics_scrape_source_errors_total", "Scrape-time readings that failed (the gauge keeps its last value)", ["source"]),
};

/** Records one checkout answer (orders.create): latency and outcome. */
export function observeCheckout(startedAt: number, outcome: string, reason?: string | null): void {
	businessMetrics.checkoutDuration.observe({ outcome }, (Date.now() - startedAt) / 1000);
	businessMetrics.checkouts.inc({ outcome, reason: reason ?? "" });
}

/**
 * Broker middleware: the checkout's latency and outcome, measured around `orders.create` on the
 * node that answers it (an idempotent replay is an answer too and is counted as one).
 */
export const BusinessMetricsMiddleware: Middleware = {
	name: "BusinessMetrics",
	localAction(handler: (ctx: any) => Promise<any>, action: { name?: string }) {
		if (action.name !== "orders.create") return handler;
		return async (ctx: any) => {
			const startedAt = Date.now();
			try {
				const order = await handler(ctx);
				observeCheckout(startedAt, String(order?.status ?? "unknown"), order?.failureReason);
				return order;
			} catch (err) {
				observeCheckout(startedAt, "error", (err as { type?: string })?.type ?? null);
				throw err;
			}
		};
	},
} as Middleware;

/**
 * Gateway middleware (moleculer-web `use`): every answer counted by method, route pattern (the
 * alias, e.g. `/api/v1/products/:id`, never the raw URL) and status, and timed.
 */
export function httpMetricsMiddleware(req: any, res: ServerResponse, next: (err?: unknown) => void): void {
	const startedAt = process.hrtime.bigint();
	res.once("finish", () => {
		const alias = req.$alias;
		const route = alias ? `${req.$route?.path ?? ""}/${String(alias.path ?? "").replace(/^\//, "")}`.replace(/\/+$/, "") || "/" : "unmatched";
		const method = String(req.method ?? "GET");
		const status = String(res.statusCode);
		httpMetrics.requests.inc({ method, route, status });
		httpMetrics.duration.observe({ method, route, status_class: `${status[0]}xx` }, Number(process.hrtime.bigint() - startedAt) / 1e9);
	});
	next();
}

// ---- scrape-time gauges ----------------------------------------------------------------------

const READ_TIMEOUT_MS = 2000;

async function reading(source: string, fn: () => Promise<void>): Promise<void> {
	let timer: NodeJS.Timeout | undefined;
	try {
		await Promise.race([fn(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("timed out")), READ_TIMEOUT_MS)))]);
	} catch {
		stateGauges.scrapeErrors.inc({ source });
	} finally {
		clearTimeout(timer);
	}
}

/** The (saga, status) labels each saga-owning service has reported, so that a status that emptied reads 0. */
const sagaLabels = new Map<string, Set<string>>();

/** Fills the state gauges from this broker's local services and its event bus. */
export async function refreshScrapeGauges(broker: ServiceBroker): Promise<void> {
	const services = ((broker as any).services as any[]).filter(s => s.sequelize || s.$outbox);
	const tasks: Promise<void>[] = [];
	tasks.push(
		reading("readiness", async () => {
			stateGauges.nodeReady.set((await readiness(broker)).status === "ok" ? 1 : 0);
		}),
	);
	stateGauges.runningContexts.set(runningContexts(broker));
	for (const s of services) {
		const pool = s.sequelize?.connectionManager?.pool;
		if (pool) {
			// PostgreSQL: sequelize-pool's counters; SQLite has no pool.
			stateGauges.dbPool.set({ service: s.name, state: "using" }, pool.using ?? 0);
			stateGauges.dbPool.set({ service: s.name, state: "available" }, pool.available ?? 0);
			stateGauges.dbPool.set({ service: s.name, state: "waiting" }, pool.waiting ?? 0);
			stateGauges.dbPool.set({ service: s.name, state: "max" }, pool.maxSize ?? 0);
		}
		if (s.$ownsSagas) {
			tasks.push(
				reading(`${s.name}:sagas`, async () => {
					const rows: { name: string; status: string; n: string | number }[] = await s.sequelize.query("SELECT name, status, COUNT(*) AS n FROM saga_instances GROUP BY name, status", { type: "SELECT" });
					// A status no saga is in any more reads 0, not its last count (a STUCK saga that finished).
					const seen = sagaLabels.get(s.name) ?? new Set<string>();
					for (const key of seen) {
						const [saga, status] = key.split("\u0000");
						stateGauges.sagas.set({ service: s.name, saga, status }, 0);
					}
					for (const r of rows) {
						stateGauges.sagas.set({ service: s.name, saga: r.name, status: r.status }, Number(r.n));
						seen.add(`${r.name}\u0000${r.status}`);
					}
					sagaLabels.set(s.name, seen);
				}),
			);
		}
		if (s.name === "orders" && s.models?.Order) {
			tasks.push(
				reading("orders:status", async () => {
					const table = s.models.Order.getTableName();
					const rows: { status: string; reason: string | null; n: string | number }[] = await s.sequelize.query(`SELECT status, failure_reason AS reason, COUNT(*) AS n FROM ${typeof table === "string" ? table : table.tableName} GROUP BY status, failure_reason`, { type: "SELECT" });
					for (const r of rows) stateGauges.ordersByStatus.set({ status: r.status, reason: r.reason ?? "" }, Number(r.n));
				}),
			);
		}
		const outbox = s.$outbox;
		if (outbox && typeof outbox.counts === "function") {
			tasks.push(
				reading(`${s.name}:outbox`, async () => {
					const counts: Record<string, number> = await outbox.counts();
					for (const state of ["PENDING", "DEAD", "PUBLISHED"]) stateGauges.outboxEvents.set({ service: s.name, state }, counts[state] ?? 0);
					const [row]: { oldest: string | Date | null }[] = await s.sequelize.query("SELECT MIN(occurred_at) AS oldest FROM outbox_events WHERE status = 'PENDING'", { type: "SELECT" });
					stateGauges.outboxOldestPending.set({ service: s.name }, row?.oldest ? Math.max(0, (Date.now() - new Date(row.oldest).getTime()) / 1000) : 0);
				}),
			);
		}
	}
	// Only a node with producers or consumers has a bus (asking for one would open a connection).
	// Required here, not on top: lib/bus records its own metrics in this module's registry.
	const bus = broker.getLocalService("$events") ? (require("./bus") as typeof import("./bus")).busFor(broker) : undefined;
	if (bus && bus.mode === "jetstream") {
		tasks.push(
			reading("jetstream", async () => {
				const status = await bus.status();
				for (const c of status.consumers) {
					stateGauges.jetstreamPending.set({ group: c.group, event: c.event }, c.pending);
					stateGauges.jetstreamAckPending.set({ group: c.group, event: c.event }, c.inFlight);
				}
				if (typeof status.deadLetters === "number") stateGauges.jetstreamDeadLetters.set(status.deadLetters);
			}),
		);
	}
	await Promise.all(tasks);
}

// ---- the node's metrics and health endpoint --------------------------------------------------

/**
 * Moleculer metrics that describe the host rather than the service: left out of /metrics
 * (Moleculer's reporter `excludes` patterns).
 */
export const HOST_DETAIL_METRICS = ["os.hostname", "os.type", "os.release", "os.arch", "os.platform", "os.user.*", "os.network.*", "os.datetime.*", "os.cpu.info.*", "process.arguments", "process.pid", "process.ppid", "process.versions.*"];

export interface MetricsEndpointOptions {
	port: number;
	host: string;
	path?: string;
	/** Bearer token required on /metrics. */
	token?: string;
	/** `user:password` accepted as basic auth on /metrics. */
	basicAuth?: string;
}

function sameSecret(given: string, expected: string): boolean {
	const a = Buffer.from(given);
	const b = Buffer.from(expected);
	return a.length === b.length && timingSafeEqual(a, b);
}

/** True when the request carries the configured token or basic credentials (or none are configured). */
export function authorizedScrape(header: string | undefined, opts: Pick<MetricsEndpointOptions, "token" | "basicAuth">): boolean {
	if (!opts.token && !opts.basicAuth) return true;
	const m = /^(Bearer|Basic)\s+(\S+)$/i.exec(header ?? "");
	if (!m) return false;
	if (m[1].toLowerCase() === "bearer") return Boolean(opts.token) && sameSecret(m[2], opts.token!);
	if (!opts.basicAuth) return false;
	return sameSecret(Buffer.from(m[2], "base64").toString("utf8"), opts.basicAuth);
}

const PrometheusBase = MetricReporters.Prometheus as any;

/**
 * Moleculer's Prometheus reporter with our own HTTP server: the configured interface only,
 * authentication on /metrics, health routes, prom-client's registry appended, port 0 resolved.
 */
export class CombinedPrometheusReporter extends PrometheusBase {
	declare opts: { path: string; port: number; host: string; excludes?: string[]; defaultLabels?: unknown };
	declare logger: { error(...args: unknown[]): void; info(...args: unknown[]): void };
	declare registry: { broker: ServiceBroker };
	declare generatePrometheusResponse: () => string;
	declare defaultLabels: unknown;
	server!: Server;
	private listening!: Promise<void>;
	private readonly endpoint: MetricsEndpointOptions;

	constructor(opts: MetricsEndpointOptions) {
		super({ port: opts.port, path: opts.path ?? "/metrics", excludes: HOST_DETAIL_METRICS });
		this.endpoint = opts;
	}

	init(registry: any): void {
		// The base class's init would bind every interface when the port is 0: set up what it does, minus its server.
		(MetricReporters.Base as any).prototype.init.call(this, registry);
		this.defaultLabels = typeof this.opts.defaultLabels === "function" ? (this.opts.defaultLabels as any).call(this, registry) : this.opts.defaultLabels;
		this.server = createServer((req, res) => this.handler(req, res));
		this.listening = new Promise((resolve, reject) => {
			this.server.once("error", (err: Error) => {
				reject(err);
				registry.broker.fatal(`Metrics endpoint cannot listen on ${this.endpoint.host}:${this.endpoint.port}: ${err.message}`, err);
			});
			this.server.listen({ port: this.endpoint.port, host: this.endpoint.host }, () => resolve());
		});
		this.listening.catch(() => undefined);
	}

	/** The port really bound (resolves `METRICS_PORT=0`); null until listening. */
	boundPort(): number | null {
		return this.server?.listening ? (this.server.address() as AddressInfo).port : null;
	}

	whenListening(): Promise<void> {
		return this.listening;
	}

	stop(): Promise<void> {
		return new Promise(resolve => {
			if (!this.server?.listening) return resolve();
			this.server.close(() => resolve());
			this.server.closeAllConnections();
		});
	}

	handler(req: IncomingMessage, res: ServerResponse): void {
		const path = (req.url ?? "").split("?")[0];
		const broker = this.registry.broker;
		if (req.method !== "GET" && req.method !== "HEAD") return this.send(res, 405, "text/plain", "");
		if (path === "/health/live") return this.send(res, 200, "application/json", JSON.stringify({ status: "ok" }));
		if (path === "/health/ready") {
			readiness(broker)
				.then(report => {
					stateGauges.nodeReady.set(report.status === "ok" ? 1 : 0);
					this.send(res, report.status === "ok" ? 200 : 503, "application/json", JSON.stringify(report));
				})
				.catch((err: Error) => this.send(res, 503, "application/json", JSON.stringify({ status: "unavailable", down: [err.message] })));
			return;
		}
		if (path !== this.opts.path) return this.send(res, 404, "text/plain", "");
		if (!authorizedScrape(req.headers.authorization, this.endpoint)) {
			res.setHeader("WWW-Authenticate", this.endpoint.token ? 'Bearer realm="metrics"' : 'Basic realm="metrics"');
			return this.send(res, 401, "text/plain", "");
		}
		refreshScrapeGauges(broker)
			.then(() => promRegistry.metrics())
			.then((extra: string) => this.send(res, 200, "text/plain; version=0.0.4; charset=utf-8", `${this.generatePrometheusResponse()}\n${extra}`))
			.catch((err: Error) => {
				this.logger.error("Unable to generate the metrics response", err);
				this.send(res, 503, "text/plain", "");
			});
	}

	private send(res: ServerResponse, status: number, type: string, body: string): void {
		res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff" });
		res.end(body);
	}
}
