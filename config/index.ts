/**
 * The platform's configuration: one typed, validated object built from the environment.
 * A bad or missing value stops start-up with a message naming the variable.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";
import { parseTrustProxy } from "../lib/client-address";

const bool = z
	.enum(["true", "false", "1", "0", "yes", "no"])
	.transform(v => v === "true" || v === "1" || v === "yes");
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const list = z.string().transform(s => s.split(",").map(v => v.trim()).filter(Boolean));

const schema = z.object({
	NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
	NODE_ID: z.string().min(1).optional(),
	NAMESPACE: z.string().default(""),
	SERVICES: list.optional(),
	TRANSPORTER: z
		.string()
		.regex(/^nats:\/\/\S+$/, "must be a nats:// URL")
		.optional(),

	HOST: z.string().default("0.0.0.0"),
	PORT: int(0, 65535).default(3000),
	METRICS_PORT: int(0, 65535).default(3030),
	METRICS_ENABLED: bool.default(true),
	REQUEST_TIMEOUT_MS: int(100, 120_000).default(10_000),
	SHUTDOWN_TIMEOUT_MS: int(100, 120_000).default(10_000),

	DATA_DIR: z.string().default("./data"),
	DATABASE_URL: z
		.string()
		.regex(/^postgres(ql)?:\/\/\S+$/, "must be a postgres:// URL")
		.optional(),
	DB_NAME_PREFIX: z
		.string()
		.regex(/^[a-z0-9_]*$/, "only lower-case letters, digits and _")
		.default(""),
	// Per service and process: the sum over every service and replica must stay below PostgreSQL's max_connections.
	DB_POOL_MAX: int(1, 200).default(5),

	JWT_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
	JWT_ISSUER: z.string().default("moleculer-commerce"),
	JWT_AUDIENCE: z.string().default("moleculer-commerce-api"),
	ACCESS_TOKEN_TTL_S: int(30, 900).default(900),
	REFRESH_TOKEN_TTL_S: int(300, 90 * 24 * 3600).default(30 * 24 * 3600),
	ADMIN_EMAIL: z.email().default("admin@example.com"),
	ADMIN_PASSWORD: z.string().min(10, "must be at least 10 characters").optional(),

	CORS_ORIGINS: list.default([]),
	// false, a number of proxy hops in front of the gateway (true = 1), or a list of trusted proxy addresses/CIDRs (lib/client-address.ts).
	TRUST_PROXY: z
		.string()
		.default("false")
		.transform((v, ctx) => {
			try {
				return parseTrustProxy(v);
			} catch {
				ctx.addIssue({ code: "custom", message: "must be true, false, a number of hops or a list of addresses/CIDRs" });
				return z.NEVER;
			}
		}),
	RATE_LIMIT_WINDOW_MS: int(1000, 3_600_000).default(60_000),
	RATE_LIMIT_MAX: int(1, 1_000_000).default(600),
	AUTH_RATE_LIMIT_MAX: int(1, 100_000).default(10),
	// Failed logins per account (lib/identity/login-throttle.ts): the first wait, doubling up to the longest.
	LOGIN_THROTTLE_BASE_MS: int(10, 3_600_000).default(1000),
	LOGIN_THROTTLE_MAX_MS: int(10, 86_400_000).default(300_000),
	BODY_LIMIT: z.string().regex(/^\d+(kb|mb)$/).default("100kb"),

	LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info"),
	LOG_FORMAT: z.enum(["json", "text"]).optional(),

	SEED_DEMO: bool.optional(),
	FREE_SHIPPING_THRESHOLD_CENTS: int(0, 100_000_000).default(5000),
	TAX_RATE_BPS: int(0, 5000).default(0),
	CHECKOUT_WAIT_MS: int(0, 60_000).default(4000),
	SAGA_LEASE_MS: int(500, 600_000).default(30_000),
	SAGA_RECOVER_MS: int(100, 600_000).default(5000),
	SAGA_COMPENSATION_ATTEMPTS: int(1, 100).default(6),
	// A STUCK saga is taken over again after this pause, doubled at each attempt up to the maximum.
	SAGA_STUCK_RETRY_BASE_MS: int(100, 3_600_000).default(10_000),
	SAGA_STUCK_RETRY_MAX_MS: int(100, 86_400_000).default(900_000),
	// The payments reconciler (issue 8): a pass every PAYMENTS_RECONCILE_MS (0: never, only on demand),
	// over payments changed in the last PAYMENTS_RECONCILE_WINDOW_HOURS and untouched for PAYMENTS_RECONCILE_GRACE_MS.
	PAYMENTS_RECONCILE_MS: int(0, 86_400_000).default(60_000),
	PAYMENTS_RECONCILE_GRACE_MS: int(0, 86_400_000).default(60_000),
	PAYMENTS_RECONCILE_WINDOW_HOURS: int(1, 24 * 365).default(72),
	TEST_FAULTS: z.string().default(""),
	TEST_FAULTS_FILE: z.string().optional(),

	// Durable events (docs/EVENTS.md): a handler that fails is retried with exponential backoff
	// from EVENTS_RETRY_BASE_MS up to EVENTS_RETRY_MAX_MS, and dead-lettered after EVENTS_MAX_ATTEMPTS.
	EVENTS_MAX_ATTEMPTS: int(1, 1000).default(5),
	EVENTS_RETRY_BASE_MS: int(10, 3_600_000).default(1000),
	EVENTS_RETRY_MAX_MS: int(10, 86_400_000).default(60_000),
	// The outbox relay's periodic pass (it is also kicked after every commit that recorded events).
	EVENTS_POLL_MS: int(20, 600_000).default(1000),
	// Published outbox rows and JetStream messages are kept this long; inbox records twice as long.
	EVENTS_RETENTION_HOURS: int(1, 24 * 365).default(168),
	// JetStream redelivers a message not acknowledged within this time (handlers signal progress).
	EVENTS_ACK_WAIT_MS: int(1000, 600_000).default(30_000),

	// Operations (docs/OPERATIONS.md): the metrics/health endpoint, NATS credentials and TLS, tracing.
	// The metrics port answers only on this interface; a non-loopback one needs a token or basic auth in production.
	METRICS_HOST: z.string().min(1).default("127.0.0.1"),
	METRICS_AUTH_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
	METRICS_BASIC_AUTH: z.string().regex(/^[^:]+:.{8,}$/, "must be user:password (password at least 8 characters)").optional(),
	// Per-cluster NATS credentials (the server's accounts, deploy/nats/nats.conf) and TLS files.
	NATS_USER: z.string().min(1).optional(),
	NATS_PASSWORD: z.string().min(8, "must be at least 8 characters").optional(),
	NATS_TLS_CA_FILE: z.string().min(1).optional(),
	NATS_TLS_CERT_FILE: z.string().min(1).optional(),
	NATS_TLS_KEY_FILE: z.string().min(1).optional(),
	// Zipkin v2 collector base URL (Jaeger accepts it on 9411), e.g. http://jaeger:9411; tracing is off without it.
	ZIPKIN_URL: z.url().optional(),
	// Read cache (lib/cache.ts): unset = in-memory LRU per process; redis://host:port[/db] = one Redis for every node; off = none.
	CACHER: z
		.string()
		.regex(/^(off|rediss?:\/\/\S+)$/, "must be off or a redis:// URL")
		.optional(),
});

type Env = z.infer<typeof schema>;

export interface Config extends Omit<Env, "JWT_SECRET" | "ADMIN_PASSWORD" | "LOG_FORMAT" | "SEED_DEMO"> {
	JWT_SECRET: string;
	ADMIN_PASSWORD: string;
	LOG_FORMAT: "json" | "text";
	SEED_DEMO: boolean;
	/** Per-service database URL overrides: `<SERVICE>_DATABASE_URL`. */
	serviceDatabaseUrls: Record<string, string>;
	isProduction: boolean;
}

export class ConfigError extends Error {
	constructor(public readonly problems: string[]) {
		super(`Invalid configuration:\n  ${problems.join("\n  ")}`);
		this.name = "ConfigError";
	}
}

/** Docker secrets arrive as files: `X_FILE=/run/secrets/x` stands for `X`. */
function readFileVariables(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
	const out = { ...env };
	for (const name of ["JWT_SECRET", "ADMIN_PASSWORD", "DATABASE_URL", "NATS_PASSWORD", "METRICS_AUTH_TOKEN", "METRICS_BASIC_AUTH"]) {
		const file = env[`${name}_FILE`];
		if (file && !out[name]) out[name] = readFileSync(file, "utf8").trim();
	}
	return out;
}

/** 127.0.0.0/8, ::1 and localhost: reachable from this machine only. */
export function isLoopback(host: string): boolean {
	return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The embedded default keeps a generated secret in its data directory, created once. */
function persistedSecret(dataDir: string, name: string, bytes: number): string {
	const file = join(resolve(dataDir), name);
	if (existsSync(file)) return readFileSync(file, "utf8").trim();
	mkdirSync(resolve(dataDir), { recursive: true });
	const value = randomBytes(bytes).toString("base64url");
	writeFileSync(file, value, { mode: 0o600, flag: "wx" });
	return value;
}

export function loadConfig(rawEnv: NodeJS.ProcessEnv = process.env): Config {
	const env = readFileVariables(rawEnv);
	// Empty strings mean "not set", as they do in compose files.
	const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
	const parsed = schema.safeParse(cleaned);
	if (!parsed.success) {
		throw new ConfigError(parsed.error.issues.map(i => `${i.path.join(".")}: ${i.message}`));
	}
	const c = parsed.data;
	const isProduction = c.NODE_ENV === "production";
	const missing: string[] = [];
	if (isProduction && !c.JWT_SECRET) missing.push("JWT_SECRET: required when NODE_ENV=production");
	if (isProduction && !c.ADMIN_PASSWORD) missing.push("ADMIN_PASSWORD: required when NODE_ENV=production");
	if (isProduction && c.TRANSPORTER && !(c.NATS_USER && c.NATS_PASSWORD)) missing.push("NATS_USER, NATS_PASSWORD: required when NODE_ENV=production and TRANSPORTER is set");
	if (isProduction && c.METRICS_ENABLED && !isLoopback(c.METRICS_HOST) && !c.METRICS_AUTH_TOKEN && !c.METRICS_BASIC_AUTH) {
		missing.push(`METRICS_AUTH_TOKEN or METRICS_BASIC_AUTH: required when NODE_ENV=production and METRICS_HOST (${c.METRICS_HOST}) is not a loopback address`);
	}
	if ((c.NATS_TLS_CERT_FILE === undefined) !== (c.NATS_TLS_KEY_FILE === undefined)) missing.push("NATS_TLS_CERT_FILE, NATS_TLS_KEY_FILE: give both or neither");
	if (missing.length) throw new ConfigError(missing);

	const serviceDatabaseUrls: Record<string, string> = {};
	for (const [key, value] of Object.entries(cleaned)) {
		const m = /^([A-Z]+)_DATABASE_URL$/.exec(key);
		if (m && value) serviceDatabaseUrls[m[1].toLowerCase()] = value;
	}

	return Object.freeze({
		...c,
		JWT_SECRET: c.JWT_SECRET ?? persistedSecret(c.DATA_DIR, ".jwt-secret", 48),
		ADMIN_PASSWORD: c.ADMIN_PASSWORD ?? persistedSecret(c.DATA_DIR, ".admin-password", 18),
		LOG_FORMAT: c.LOG_FORMAT ?? (isProduction ? "json" : "text"),
		SEED_DEMO: c.SEED_DEMO ?? (!c.TRANSPORTER && c.NODE_ENV !== "test"),
		serviceDatabaseUrls,
		isProduction,
	});
}

let current: Config | undefined;

/** The process-wide configuration, built on first use. */
export function config(): Config {
	current ??= loadConfig();
	return current;
}

/** Tests change the environment between brokers; this forgets the cached object. */
export function resetConfig(): void {
	current = undefined;
}
