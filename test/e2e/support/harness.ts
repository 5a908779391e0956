/**
 * End-to-end harness: real node processes (`node dist/bin/start.js`) over the machine's NATS and
 * PostgreSQL, each test file with its own namespace and database prefix, torn down afterwards.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import pg from "pg";
import { QueryTypes, Sequelize } from "sequelize";
import { installSafeInt8Parser } from "../../../lib/money";
import { TEST_ADMIN, TEST_JWT_SECRET } from "../../support/env";

// Rows read by tests carry money as the services read it: BIGINT as exact numbers (lib/money.ts).
installSafeInt8Parser(pg);

/** The repository root (this file also runs compiled, from dist/, inside the benchmarks). */
function repositoryRoot(dir: string): string {
	while (!existsSync(join(dir, "package.json"))) dir = dirname(dir);
	return dir;
}
const ROOT = repositoryRoot(__dirname);
export const NATS_URL = process.env.E2E_NATS_URL ?? "nats://127.0.0.1:4222";
export const PG_URL = process.env.E2E_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export interface NodeSpec {
	name: string;
	services: string[];
	env?: Record<string, string>;
}

interface RunningNode {
	spec: NodeSpec;
	child: ChildProcess;
	output: string[];
	/** The ports the node bound and reported (bin/start.ts NodeStarted), once it has started. */
	httpPort: number | null;
	metricsPort: number | null;
	/** Set when the node reported that its broker and every service on it have started. */
	started: boolean;
}

export interface HttpResult {
	status: number;
	headers: Headers;
	body: any;
	ms: number;
}

/**
 * The cluster topology of `npm run cluster` and the Swarm stack's services, one node process per
 * group: the shape most e2e tests and bench:checkout run.
 */
export const SHOP_NODES: NodeSpec[] = [
	{ name: "gateway", services: ["api"] },
	{ name: "identity", services: ["auth", "customers", "users"] },
	{ name: "catalog", services: ["catalog"] },
	{ name: "commerce", services: ["cart", "orders", "payments"] },
	{ name: "inventory", services: ["warehouse", "fulfillment", "shipping"] },
];

export class TestCluster {
	readonly id = Math.random().toString(36).slice(2, 8);
	readonly prefix = `e2e_${this.id}_`;
	readonly dataDir = mkdtempSync(join(tmpdir(), "mc-e2e-"));
	private readonly nodes = new Map<string, RunningNode>();
	port = 0;

	constructor(
		private readonly specs: NodeSpec[],
		private readonly env: Record<string, string> = {},
	) {}

	get baseUrl(): string {
		return `http://127.0.0.1:${this.port}`;
	}

	/**
	 * Starts every node. Each binds any free port (PORT=0, METRICS_PORT=0) and reports the ports it
	 * bound over IPC: never "pick a free port now, bind it later" (another process may take it).
	 */
	async start(): Promise<void> {
		for (const spec of this.specs) await this.spawnNode(spec);
		await this.waitUntil(async () => this.port > 0 && (await this.http("GET", "/health/ready")).status === 200, 60_000, "gateway ready");
		// Every gateway replica, when there are several.
		for (const gw of this.gateways()) {
			await this.waitUntil(async () => this.httpPort(gw) !== null && (await this.http("GET", "/health/ready", { via: gw })).status === 200, 60_000, `${gw} ready`);
		}
	}

	/** The HTTP port a gateway node reported (null before it started): with several gateway replicas, each has its own. */
	httpPort(name: string): number | null {
		return this.nodes.get(name)?.httpPort ?? null;
	}

	/** The names of the running nodes that serve HTTP (the gateway replicas). */
	gateways(): string[] {
		return [...this.nodes].filter(([, n]) => n.spec.services.includes("api")).map(([name]) => name);
	}

	/** The metrics/health port a node reported (null before it started, or with metrics off). */
	metricsPort(name: string): number | null {
		return this.nodes.get(name)?.metricsPort ?? null;
	}

	/** The environment every node of this cluster shares (for an extra process joining it). */
	nodeEnv(): Record<string, string> {
		return {
			NODE_ENV: "test",
			NAMESPACE: `e2e-${this.id}`,
			TRANSPORTER: NATS_URL,
			DATABASE_URL: PG_URL,
			DB_NAME_PREFIX: this.prefix,
			DATA_DIR: this.dataDir,
			JWT_SECRET: TEST_JWT_SECRET,
			ADMIN_EMAIL: TEST_ADMIN.email,
			ADMIN_PASSWORD: TEST_ADMIN.password,
			METRICS_ENABLED: "false",
			...this.env,
		};
	}

	private async spawnNode(spec: NodeSpec): Promise<void> {
		const child = spawn(process.execPath, [join(ROOT, "dist/bin/start.js")], {
			cwd: ROOT,
			env: {
				...process.env,
				NODE_ENV: "test",
				// A restarted node keeps its id, as a supervised process with a configured NODE_ID does.
				NODE_ID: `${spec.name}-${this.id}`,
				NAMESPACE: `e2e-${this.id}`,
				TRANSPORTER: NATS_URL,
				DATABASE_URL: PG_URL,
				DB_NAME_PREFIX: this.prefix,
				DATA_DIR: this.dataDir,
				PORT: "0",
				METRICS_PORT: "0",
				JWT_SECRET: TEST_JWT_SECRET,
				ADMIN_EMAIL: TEST_ADMIN.email,
				ADMIN_PASSWORD: TEST_ADMIN.password,
				LOG_LEVEL: "warn",
				LOG_FORMAT: "text",
				SEED_DEMO: "true",
				SERVICES: spec.services.join(","),
				...this.env,
				...spec.env,
			},
			stdio: ["ignore", "pipe", "pipe", "ipc"],
		});
		const node: RunningNode = { spec, child, output: [], httpPort: null, metricsPort: null, started: false };
		child.on("message", (msg: any) => {
			if (msg?.type !== "mc:node-started") return;
			node.httpPort = msg.httpPort;
			node.metricsPort = msg.metricsPort;
			node.started = true;
			// A (re)started gateway is reached on the port it bound this time.
			if (msg.httpPort) this.port = msg.httpPort;
		});
		const output = node.output;
		const keep = (b: Buffer) => {
			output.push(b.toString());
			if (output.length > 400) output.shift();
		};
		child.stdout!.on("data", keep);
		child.stderr!.on("data", keep);
		this.nodes.set(spec.name, node);
	}

	/** The process ids of the running nodes, by name (for benchmarks reading CPU time from /proc). */
	pids(): Record<string, number> {
		return Object.fromEntries([...this.nodes].filter(([, n]) => n.child.exitCode === null && n.child.pid).map(([name, n]) => [name, n.child.pid!]));
	}

	/** The node's recent output, for a failing test's message. */
	logs(name?: string): string {
		const names = name ? [name] : [...this.nodes.keys()];
		return names.map(n => `--- ${n} ---\n${this.nodes.get(n)?.output.join("") ?? ""}`).join("\n");
	}

	async kill(name: string, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
		const node = this.nodes.get(name);
		if (!node || node.child.exitCode !== null) return;
		const exited = new Promise(resolve => node.child.once("exit", resolve));
		node.child.kill(signal);
		await exited;
	}

	/** Sends a signal and returns at once (SIGSTOP pauses a node, SIGCONT resumes it). */
	signal(name: string, signal: NodeJS.Signals): void {
		this.nodes.get(name)!.child.kill(signal);
	}

	/** A query on one service's own database (PostgreSQL), e.g. to read a saga's log. */
	async query<T = any>(service: string, sql: string, replacements: Record<string, unknown> = {}): Promise<T[]> {
		const url = new URL(PG_URL);
		url.pathname = `/${this.prefix}${service}`;
		const db = new Sequelize(url.toString(), { logging: false });
		try {
			return (await db.query(sql, { replacements, type: QueryTypes.SELECT })) as unknown as T[];
		} finally {
			await db.close();
		}
	}

	async restart(name: string): Promise<void> {
		const node = this.nodes.get(name);
		if (!node) throw new Error(`no node ${name}`);
		await this.kill(name, "SIGTERM");
		await this.spawnNode(node.spec);
	}

	/**
	 * Starts a node again after it died, optionally with other environment variables, and waits until
	 * it reports every service started (bin/start.ts). A restarted node keeps its id, so until then
	 * the other nodes, which still know its previous run's services, send it calls it cannot serve yet
	 * (a saga step would count as not sent and be compensated): then a short pause for its INFO to
	 * reach them.
	 */
	async respawn(name: string, env?: Record<string, string>, timeoutMs = 60_000): Promise<void> {
		const node = this.nodes.get(name);
		if (!node) throw new Error(`no node ${name}`);
		if (env) node.spec = { ...node.spec, env: { ...node.spec.env, ...env } };
		await this.spawnNode(node.spec);
		await this.waitStarted(name, timeoutMs);
	}

	/**
	 * Waits until the node reports every service started (bin/start.ts), then half a second for its
	 * INFO to reach the other nodes (so they call it). Returns at once if the process exited.
	 */
	async waitStarted(name: string, timeoutMs = 60_000): Promise<void> {
		const current = this.nodes.get(name);
		if (!current) throw new Error(`no node ${name}`);
		await this.waitUntil(async () => current.started || current.child.exitCode !== null, timeoutMs, `${name} started`);
		if (current.started) await new Promise(r => setTimeout(r, 500));
	}

	/** Resolves when the node's process has exited (e.g. killed by a fault point). */
	async exited(name: string, timeoutMs = 30_000): Promise<number | null> {
		const child = this.nodes.get(name)!.child;
		if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => reject(new Error(`${name} did not exit\n${this.logs(name)}`)), timeoutMs);
			child.once("exit", code => {
				clearTimeout(timer);
				resolve(code);
			});
		});
	}

	async stop(): Promise<void> {
		await Promise.all([...this.nodes.keys()].map(n => this.kill(n, "SIGTERM")));
		const admin = new Sequelize(PG_URL, { logging: false });
		try {
			const [rows] = await admin.query(`SELECT datname FROM pg_database WHERE datname LIKE '${this.prefix}%'`);
			for (const r of rows as { datname: string }[]) await admin.query(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`);
		} finally {
			await admin.close();
		}
	}

	async waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
		const deadline = Date.now() + timeoutMs;
		for (;;) {
			try {
				if (await check()) return;
			} catch {
				// not up yet: connection refused while a node starts
			}
			if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}\n${this.logs()}`);
			await new Promise(r => setTimeout(r, 250));
		}
	}

	/** A request to the gateway that started last, or to the gateway replica named `via`. */
	async http(method: string, path: string, opts: { body?: unknown; raw?: string; token?: string; headers?: Record<string, string>; via?: string } = {}): Promise<HttpResult> {
		const headers: Record<string, string> = { ...opts.headers };
		if (opts.token) headers.authorization = `Bearer ${opts.token}`;
		let body: string | undefined;
		if (opts.raw !== undefined) body = opts.raw;
		else if (opts.body !== undefined) {
			body = JSON.stringify(opts.body);
			headers["content-type"] ??= "application/json";
		}
		const t0 = Date.now();
		const base = opts.via ? `http://127.0.0.1:${this.httpPort(opts.via)}` : this.baseUrl;
		const res = await fetch(base + path, { method, headers, body, signal: AbortSignal.timeout(30_000) });
		const text = await res.text();
		let parsed: unknown = text;
		try {
			parsed = text ? JSON.parse(text) : null;
		} catch {
			// an HTML page or plain text: keep it as text
		}
		return { status: res.status, headers: res.headers, body: parsed, ms: Date.now() - t0 };
	}

	// Conveniences over the public API
	async registerCustomer(tag = Math.random().toString(36).slice(2, 8)) {
		const email = `c-${tag}-${this.id}@example.com`;
		const res = await this.http("POST", "/api/v1/auth/register", { body: { email, password: "a-good-password-1", firstName: "Test", lastName: "Customer" } });
		if (res.status !== 201) throw new Error(`register failed: ${res.status} ${JSON.stringify(res.body)}`);
		return { email, password: "a-good-password-1", ...res.body };
	}

	async login(email: string, password: string) {
		const res = await this.http("POST", "/api/v1/auth/login", { body: { email, password } });
		if (res.status !== 200) throw new Error(`login failed: ${res.status} ${JSON.stringify(res.body)}`);
		return res.body as { accessToken: string; refreshToken: string; user: { id: string; typ: string; roles: string[] } };
	}

	loginAdmin() {
		return this.login(TEST_ADMIN.email, TEST_ADMIN.password);
	}

	/**
	 * Waits until a shopper can buy: catalog answers, identity refuses a wrong password (401),
	 * and, as the admin, the demo stock and the orders list answer. Returns the admin's access token.
	 */
	async waitForShop(timeoutMs = 60_000): Promise<string> {
		await this.waitUntil(async () => (await this.http("GET", "/api/v1/products?pageSize=1")).status === 200, timeoutMs, "catalog");
		await this.waitUntil(async () => (await this.http("POST", "/api/v1/auth/login", { body: { email: "x@example.com", password: "nope" } })).status === 401, timeoutMs, "identity");
		const admin = (await this.loginAdmin()).accessToken;
		await this.waitUntil(async () => (await this.http("GET", "/api/v1/admin/inventory/HP-1001", { token: admin })).status === 200, timeoutMs, "warehouse");
		await this.waitUntil(async () => (await this.http("GET", "/api/v1/admin/orders", { token: admin })).status === 200, timeoutMs, "orders");
		return admin;
	}
}
