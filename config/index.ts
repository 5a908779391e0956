/**
 * The platform's configuration: one typed, validated object built from the environment.
 * A bad or missing value stops start-up with a message naming the variable.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";

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
	TRUST_PROXY: bool.default(false),
	RATE_LIMIT_WINDOW_MS: int(1000, 3_600_000).default(60_000),
	RATE_LIMIT_MAX: int(1, 1_000_000).default(600),
	AUTH_RATE_LIMIT_MAX: int(1, 100_000).default(10),
	BODY_LIMIT: z.string().regex(/^\d+(kb|mb)$/).default("100kb"),

	LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info"),
	LOG_FORMAT: z.enum(["json", "text"]).optional(),
	JAEGER_ENDPOINT: z.url().optional(),
	JAEGER_AGENT_HOST: z.string().optional(),
	JAEGER_AGENT_PORT: int(1, 65535).default(6832),

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
	for (const name of ["JWT_SECRET", "ADMIN_PASSWORD", "DATABASE_URL"]) {
		const file = env[`${name}_FILE`];
		if (file && !out[name]) out[name] = readFileSync(file, "utf8").trim();
	}
	return out;
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
