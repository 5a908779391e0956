/**
 * `npm run bench:checkout`: checkouts through the gateway (POST /api/v1/orders) against the cluster
 * topology — gateway, identity, catalog, commerce, inventory as five node processes over NATS and
 * PostgreSQL — in three phases over a mix of BENCH_SKUS products (default 24, one line each, a SKU
 * drawn at random per checkout):
 *
 * 1. closed loop: BENCH_CONCURRENCY clients (default 32), each sending its next checkout when the
 *    last one answered, for BENCH_CLOSED_S seconds (default 12) after BENCH_WARMUP_S (default 5);
 * 2. open loop: checkouts sent at a fixed BENCH_RATE per second (default 100) for BENCH_OPEN_S
 *    seconds (default 12), whatever the answers; each latency counts from the request's intended
 *    send time, so a stall of the system (or of this client) is not hidden (no coordinated omission);
 * 3. one client: one checkout at a time for BENCH_ONE_S seconds (default 10), the latency floor.
 *
 * For each phase it measures, from outside the services:
 * - CPU (user + system, from /proc/<pid>/stat, sampled every 100 ms so a process that exits keeps
 *   what it used) of every process of the run: the five Node nodes, every process of the
 *   PostgreSQL instance (backends and its background workers) and nats-server;
 * - SQL statements and commits from PostgreSQL's own statistics: `pg_stat_statements` (calls per
 *   statement; transaction control — BEGIN/COMMIT/ROLLBACK/SAVEPOINT — counted apart) and
 *   `pg_stat_database.xact_commit`, summed over this cluster's databases;
 * - broker calls: Moleculer's `moleculer_request_total` (every action executed, local or remote)
 *   scraped from each node's /metrics, without the gateway's own `api.*` and `$node.*` actions.
 *
 * So that the figures are the run's alone, the bench starts its own nats-server (JetStream) and,
 * where `initdb` is found (PostgreSQL 15 on Debian), its own PostgreSQL instance with
 * `pg_stat_statements` preloaded, both on free ports and removed at the end. With BENCH_SHARED=1
 * (or no initdb) it uses the shared servers of the e2e tests (E2E_DATABASE_URL / E2E_NATS_URL):
 * then the statements come from pg_stat_statements only if that server preloads it (else null),
 * and CPU of PostgreSQL/NATS includes whatever else uses them.
 *
 * The per-checkout figures at the top level of bench/results/checkout.json are those of the closed
 * loop phase; each phase's own are under `phases`. A checkout is counted when it answered 201
 * CONFIRMED; each phase's meters run until BENCH_DRAIN_S (default 2) after its last answer so the
 * outbox relay and event consumers' work for those checkouts is included.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, chownSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { join } from "node:path";
import { QueryTypes, Sequelize } from "sequelize";
import { freePort } from "../test/support/ports";

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 5);
const CLOSED_S = Number(process.env.BENCH_CLOSED_S ?? 12);
const OPEN_S = Number(process.env.BENCH_OPEN_S ?? 12);
const RATE = Number(process.env.BENCH_RATE ?? 100);
const ONE_S = Number(process.env.BENCH_ONE_S ?? 10);
const SKUS = Math.max(20, Number(process.env.BENCH_SKUS ?? 24));
const DRAIN_S = Number(process.env.BENCH_DRAIN_S ?? 2);
const IDLE_S = Number(process.env.BENCH_IDLE_S ?? 5);
const SHARED = process.env.BENCH_SHARED === "1";
const PG_BIN = process.env.BENCH_PG_BIN ?? "/usr/lib/postgresql/15/bin";
const TICKS_PER_S = 100;

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
	if (!sorted.length) return 0;
	return Number(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)].toFixed(1));
}


/** CPU ms (user + system) a process has used so far; null once it is gone. */
function cpuMs(pid: number): number | null {
	try {
		const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
		const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
		return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_S;
	} catch {
		return null;
	}
}

/**
 * write(2)/writev(2) calls a process has made so far (`syscw` of /proc/<pid>/io); null once it is
 * gone. For the Node nodes and nats-server these are socket writes: every message, query and
 * answer sent. PostgreSQL sends on sockets with send(2), which syscw does not count: its figure is
 * its file writes (WAL, data).
 */
function writeCalls(pid: number): number | null {
	try {
		const m = /^syscw:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"));
		return m ? Number(m[1]) : null;
	} catch {
		return null;
	}
}

function parentOf(pid: number): number {
	try {
		const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
		return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
	} catch {
		return -1;
	}
}

function processes(pred: (pid: number) => boolean): number[] {
	return readdirSync("/proc")
		.filter(e => /^\d+$/.test(e))
		.map(Number)
		.filter(pred);
}

function comm(pid: number): string {
	try {
		return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
	} catch {
		return "";
	}
}

/** Its own nats-server with JetStream on a free port (as test/integration/events/helpers.ts does). */
async function startNats(): Promise<{ url: string; proc: ChildProcess; dir: string; monitor: number }> {
	const dir = mkdtempSync(join(tmpdir(), "mc-bench-nats-"));
	// The monitoring port gives the server's message counts (/varz): NATS messages per checkout.
	const monitor = await freePort();
	const proc = spawn("nats-server", ["-js", "-a", "127.0.0.1", "-p", "-1", "-m", String(monitor), "-sd", dir], { stdio: ["ignore", "pipe", "pipe"] });
	let log = "";
	let port = 0;
	const collect = (d: Buffer) => {
		log += d.toString();
		const m = /Listening for client connections on [^\s]+:(\d+)/.exec(log);
		if (m) port = Number(m[1]);
	};
	proc.stdout!.on("data", collect);
	proc.stderr!.on("data", collect);
	for (let i = 0; i < 100 && !port; i++) {
		if (proc.exitCode !== null) throw new Error(`nats-server exited: ${log}`);
		await sleep(100);
	}
	if (!port) throw new Error(`nats-server did not start: ${log}`);
	await sleep(300);
	return { url: `nats://127.0.0.1:${port}`, proc, dir, monitor };
}

/**
 * Its own PostgreSQL instance (initdb in a temporary directory, run as the `postgres` user when
 * this runs as root) with pg_stat_statements preloaded; defaults otherwise, as the shared server.
 */
async function startPostgres(): Promise<{ url: string; proc: ChildProcess; dir: string }> {
	const dir = mkdtempSync(join(tmpdir(), "mc-bench-pg-"));
	const data = join(dir, "data");
	const asRoot = process.getuid?.() === 0;
	let ids: { uid?: number; gid?: number } = {};
	if (asRoot) {
		const pw = readFileSync("/etc/passwd", "utf8")
			.split("\n")
			.find(l => l.startsWith("postgres:"));
		if (!pw) throw new Error("running as root and no postgres user to run PostgreSQL as");
		const [, , uid, gid] = pw.split(":");
		ids = { uid: Number(uid), gid: Number(gid) };
		chownSync(dir, ids.uid!, ids.gid!);
	}
	const init = spawnSync(join(PG_BIN, "initdb"), ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"], { ...ids, encoding: "utf8" });
	if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
	const port = await freePort();
	const proc = spawn(
		join(PG_BIN, "postgres"),
		["-D", data, "-p", String(port), "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track=all", "-c", "pg_stat_statements.max=10000", "-c", "pg_stat_statements.track_planning=on", ...(process.env.BENCH_PG_OPTS ?? "").split(/\s+/).filter(Boolean).flatMap(o => ["-c", o])],
		{ ...ids, stdio: ["ignore", "pipe", "pipe"] },
	);
	let log = "";
	proc.stdout!.on("data", (d: Buffer) => (log += d.toString()));
	proc.stderr!.on("data", (d: Buffer) => (log += d.toString()));
	const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
	for (let i = 0; ; i++) {
		if (proc.exitCode !== null) throw new Error(`postgres exited: ${log}`);
		const c = new Sequelize(url, { logging: false });
		try {
			await c.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
			await c.close();
			break;
		} catch (err) {
			await c.close().catch(() => undefined);
			if (i > 100) throw err;
			await sleep(200);
		}
	}
	return { url, proc, dir };
}

interface Snapshot {
	statements: number | null;
	txControl: number | null;
	commits: number;
	rollbacks: number;
	brokerCalls: number | null;
	/** Messages into nats-server (its /varz in_msgs), when the bench runs its own. */
	natsMessages: number | null;
	byAction: Record<string, number>;
	byQuery: Map<string, { query: string; calls: number; planMs: number; execMs: number }>;
}

async function main(): Promise<void> {
	const loadBefore = Number(loadavg()[0].toFixed(2));
	let nats: Awaited<ReturnType<typeof startNats>> | null = null;
	let pg: Awaited<ReturnType<typeof startPostgres>> | null = null;
	const ownServers = !SHARED && existsSync(join(PG_BIN, "initdb"));
	if (ownServers) {
		console.log("starting its own nats-server and PostgreSQL (pg_stat_statements)...");
		nats = await startNats();
		pg = await startPostgres();
		process.env.E2E_NATS_URL = nats.url;
		process.env.E2E_DATABASE_URL = pg.url;
	}
	// After the URLs are set: the harness reads them when it is loaded.
	const { SHOP_NODES, TestCluster, PG_URL } = await import("../test/e2e/support/harness.js");
	const cluster = new TestCluster(
		SHOP_NODES,
		{
			AUTH_RATE_LIMIT_MAX: "100000",
			RATE_LIMIT_MAX: "1000000",
			LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "error",
			METRICS_ENABLED: "true",
			SEED_DEMO: "true",
			...(process.env.BENCH_NODE_ARGS ? { NODE_OPTIONS: process.env.BENCH_NODE_ARGS } : {}),
		},
	);
	const admin = new Sequelize(PG_URL, { logging: false, pool: { max: 1 } });
	const q = (sql: string, bind: unknown[] = []) => admin.query(sql, { bind, type: QueryTypes.SELECT }) as Promise<any[]>;
	let hasStatements = false;
	try {
		await q("SELECT 1 FROM pg_stat_statements LIMIT 1");
		hasStatements = true;
	} catch {
		console.log("pg_stat_statements is not available on this server: statements are not counted");
	}
	const postmaster = pg?.proc.pid ?? null;
	const natsPid = nats?.proc.pid ?? null;

	const snapshot = async (): Promise<Snapshot> => {
		const like = `${cluster.prefix}%`;
		const db = await q("SELECT COALESCE(SUM(xact_commit),0)::bigint AS c, COALESCE(SUM(xact_rollback),0)::bigint AS r FROM pg_stat_database WHERE datname LIKE $1", [like]);
		let statements: number | null = null;
		let txControl: number | null = null;
		const byQuery = new Map<string, { query: string; calls: number; planMs: number; execMs: number }>();
		if (hasStatements) {
			for (const r of await q("SELECT p.queryid::text AS id, p.query, p.calls::bigint AS calls, p.total_plan_time AS plan, p.total_exec_time AS exec FROM pg_stat_statements p JOIN pg_database d ON d.oid = p.dbid WHERE d.datname LIKE $1", [like]))
				byQuery.set(r.id, { query: String(r.query).replace(/\s+/g, " ").slice(0, 160), calls: Number(r.calls), planMs: Number(r.plan), execMs: Number(r.exec) });
			const s = await q(
				`SELECT COALESCE(SUM(calls) FILTER (WHERE query !~* '^\\s*(BEGIN|COMMIT|ROLLBACK|START TRANSACTION|SAVEPOINT|RELEASE|END)'),0)::bigint AS s,
				        COALESCE(SUM(calls) FILTER (WHERE query ~* '^\\s*(BEGIN|COMMIT|ROLLBACK|START TRANSACTION|SAVEPOINT|RELEASE|END)'),0)::bigint AS t
				   FROM pg_stat_statements p JOIN pg_database d ON d.oid = p.dbid WHERE d.datname LIKE $1`,
				[like],
			);
			statements = Number(s[0].s);
			txControl = Number(s[0].t);
		}
		const byAction: Record<string, number> = {};
		let brokerCalls: number | null = 0;
		for (const name of Object.keys(cluster.pids())) {
			const port = cluster.metricsPort(name);
			if (!port) {
				brokerCalls = null;
				continue;
			}
			const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
			for (const line of text.split("\n")) {
				// Each action executed counts once (type="local"); a remote call is counted by its caller too.
				// Moleculer events handled (broadcasts count once per receiving node): "event:<name>".
				if (line.startsWith("moleculer_event_received_total{")) {
					const event = /event="([^"]*)"/.exec(line)?.[1] ?? "?";
					const n = Number(line.slice(line.lastIndexOf(" ") + 1));
					byAction[`event:${event}`] = (byAction[`event:${event}`] ?? 0) + n;
					continue;
				}
				if (!line.startsWith("moleculer_request_total{") || !line.includes('type="local"')) continue;
				const action = /action="([^"]*)"/.exec(line)?.[1] ?? "?";
				if (action.startsWith("api.") || action.startsWith("$node.")) continue;
				const n = Number(line.slice(line.lastIndexOf(" ") + 1));
				byAction[action] = (byAction[action] ?? 0) + n;
				if (brokerCalls !== null) brokerCalls += n;
			}
		}
		let natsMessages: number | null = null;
		if (nats) natsMessages = Number(((await (await fetch(`http://127.0.0.1:${nats.monitor}/varz`)).json()) as { in_msgs: number }).in_msgs);
		return { statements, txControl, commits: Number(db[0].c), rollbacks: Number(db[0].r), brokerCalls, natsMessages, byAction, byQuery };
	};

	/** CPU per group of processes between start() and the stop() it returns. */
	const cpuMeter = () => {
		const groups = (): [string, number][] => {
			const out: [string, number][] = Object.entries(cluster.pids());
			if (postmaster) {
				out.push(["postgres", postmaster]);
				for (const pid of processes(p => parentOf(p) === postmaster)) out.push(["postgres", pid]);
			} else {
				for (const pid of processes(p => comm(p) === "postgres")) out.push(["postgres (shared)", pid]);
			}
			if (natsPid) out.push(["nats", natsPid]);
			else for (const pid of processes(p => comm(p) === "nats-server")) out.push(["nats (shared)", pid]);
			return out;
		};
		const first = new Map<number, { ms: number; writes: number }>();
		const last = new Map<number, { group: string; ms: number; writes: number }>();
		const sample = () => {
			for (const [group, pid] of groups()) {
				const ms = cpuMs(pid);
				if (ms === null) continue;
				const writes = writeCalls(pid) ?? last.get(pid)?.writes ?? 0;
				// A backend first seen during the phase started during it: all its CPU and writes count.
				if (!first.has(pid)) first.set(pid, started ? { ms: 0, writes: 0 } : { ms, writes });
				last.set(pid, { group, ms, writes });
			}
		};
		let started = false;
		sample();
		started = true;
		const timer = setInterval(sample, 100);
		return () => {
			sample();
			clearInterval(timer);
			const byProcess: Record<string, number> = {};
			const writesByProcess: Record<string, number> = {};
			for (const [pid, { group, ms, writes }] of last) {
				byProcess[group] = (byProcess[group] ?? 0) + ms - first.get(pid)!.ms;
				writesByProcess[group] = (writesByProcess[group] ?? 0) + writes - first.get(pid)!.writes;
			}
			const totalMs = Object.values(byProcess).reduce((a, b) => a + b, 0);
			return { totalMs, byProcess, writesByProcess };
		};
	};

	console.log("starting the cluster topology (5 node processes, NATS, PostgreSQL)...");
	await cluster.start();
	try {
		await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/products?pageSize=1")).status === 200, 60_000, "catalog");
		await cluster.waitUntil(async () => (await cluster.http("POST", "/api/v1/auth/login", { body: { email: "x@example.com", password: "nope" } })).status === 401, 60_000, "identity");
		const adminToken = (await cluster.loginAdmin()).accessToken;
		await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/orders", { token: adminToken })).status === 200, 60_000, "orders");
		await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/inventory/HP-1001", { token: adminToken })).status === 200, 60_000, "warehouse");
		const categories = (await cluster.http("GET", "/api/v1/categories")).body.items;
		const products: { id: string; sku: string }[] = [];
		for (let i = 1; i <= SKUS; i++) {
			const sku = `BENCH-${String(i).padStart(4, "0")}`;
			const res = await cluster.http("POST", "/api/v1/products", { token: adminToken, body: { sku, name: `Benchmark Product ${i}`, brand: "Aurora", categoryId: categories[i % categories.length].id, price: { amount: 999 + 250 * i, currency: "USD" }, weightGrams: 100 + 40 * i } });
			if (res.status !== 201) throw new Error(`product ${sku}: ${res.status} ${JSON.stringify(res.body)}`);
			products.push(res.body);
			for (const w of ["wh-east", "wh-west"]) await cluster.http("PUT", `/api/v1/admin/inventory/${sku}`, { token: adminToken, body: { warehouseId: w, onHand: 1_000_000 } });
		}
		const customers = await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => cluster.registerCustomer(`bench${i}`)));
		const address = { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" };
		let seq = 0;

		// The load generator shares the machine's two cores with the system it measures, so it is
		// kept light: node:http over kept-alive connections (a quarter to two fifths of fetch's CPU per request
		// here); its own CPU per checkout is reported beside the system's (benchClientCpuMsPerCheckout).
		const agent = new HttpAgent({ keepAlive: true, maxSockets: CONCURRENCY + RATE });
		const gatewayPort = Number(new URL(cluster.baseUrl).port);
		const post = (path: string, token: string, key: string, payload: unknown) =>
			new Promise<{ status: number; body: any }>((resolve, reject) => {
				const data = Buffer.from(JSON.stringify(payload));
				const req = httpRequest(
					{ host: "127.0.0.1", port: gatewayPort, method: "POST", path, agent, timeout: 30_000, headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "content-length": data.length, "idempotency-key": key } },
					res => {
						const chunks: Buffer[] = [];
						res.on("data", (c: Buffer) => chunks.push(c));
						res.on("end", () => {
							try {
								resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString("utf8")) });
							} catch (err) {
								reject(err);
							}
						});
						res.on("error", reject);
					},
				);
				req.on("timeout", () => req.destroy(new Error("timeout")));
				req.on("error", reject);
				req.end(data);
			});

		/** One checkout of a random SKU; resolves to its outcome ("201 CONFIRMED" when it went through). */
		const checkout = async (client: number): Promise<string> => {
			const product = products[Math.floor(Math.random() * products.length)];
			const body = { shippingAddress: address, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: product.id, quantity: 1 }] };
			try {
				const res = await post("/api/v1/orders", customers[client % customers.length].accessToken, `bench-${client}-${seq++}`, body);
				return res.status === 201 ? (res.body.status === "CONFIRMED" ? "201 CONFIRMED" : `201 ${res.body.status} ${res.body.failureReason ?? ""}`.trim()) : String(res.status);
			} catch (err) {
				return `error ${(err as Error).name}`;
			}
		};

		/** Runs a phase with all meters around it; `load` returns the latencies and outcomes it saw. */
		const measure = async (name: string, load: () => Promise<{ latencies: number[]; statuses: Record<string, number>; elapsedS: number; timeline?: unknown[] }>) => {
			console.log(`phase ${name}...`);
			const before = await snapshot();
			const stopCpu = cpuMeter();
			const client0 = process.cpuUsage();
			const { latencies, statuses, elapsedS, timeline } = await load();
			await sleep(DRAIN_S * 1000);
			const cpu = stopCpu();
			const clientCpu = process.cpuUsage(client0);
			await sleep(600); // pg_stat_database is flushed by backends at most once a second
			const after = await snapshot();
			const confirmed = statuses["201 CONFIRMED"] ?? 0;
			const per = (n: number | null) => (n === null || !confirmed ? null : Number((n / confirmed).toFixed(2)));
			const sorted = [...latencies].sort((a, b) => a - b);
			const byAction: Record<string, number | null> = {};
			for (const [a, n] of Object.entries(after.byAction)) if (n - (before.byAction[a] ?? 0) > 0) byAction[a] = per(n - (before.byAction[a] ?? 0));
			const statementsByQuery = [...after.byQuery]
				.map(([id, { query, calls, planMs, execMs }]) => {
					const b = before.byQuery.get(id);
					const n = calls - (b?.calls ?? 0);
					// Server time inside PostgreSQL per call (pg_stat_statements, track_planning on): planning and execution.
					const perCall = (ms: number) => (n > 0 ? Number((ms / n).toFixed(3)) : 0);
					return { perCheckout: per(n) ?? 0, planMsPerCall: perCall(planMs - (b?.planMs ?? 0)), execMsPerCall: perCall(execMs - (b?.execMs ?? 0)), query };
				})
				.filter(x => x.perCheckout > 0)
				.sort((a, b) => b.perCheckout - a.perCheckout)
				.slice(0, 30);
			const byProcess: Record<string, number | null> = {};
			for (const [g, ms] of Object.entries(cpu.byProcess)) byProcess[g] = per(ms);
			const writesByProcess: Record<string, number | null> = {};
			for (const [g, n] of Object.entries(cpu.writesByProcess)) writesByProcess[g] = per(n);
			const result = {
				durationS: Number(elapsedS.toFixed(2)),
				requests: latencies.length,
				confirmed,
				statuses,
				checkoutsPerSecond: Number((confirmed / elapsedS).toFixed(1)),
				latencyMs: { p50: percentile(sorted, 50), p95: percentile(sorted, 95), p99: percentile(sorted, 99), max: percentile(sorted, 100) },
				cpuMsPerCheckout: per(cpu.totalMs),
				// The bench's own process (HTTP client, meters), not part of the system's figure above.
				benchClientCpuMsPerCheckout: per((clientCpu.user + clientCpu.system) / 1000),
				cpuMsPerCheckoutByProcess: byProcess,
				writeSyscallsPerCheckoutByProcess: writesByProcess,
				sqlStatementsPerCheckout: per(after.statements === null ? null : after.statements - before.statements!),
				transactionControlStatementsPerCheckout: per(after.txControl === null ? null : after.txControl - before.txControl!),
				commitsPerCheckout: per(after.commits - before.commits),
				rollbacksPerCheckout: per(after.rollbacks - before.rollbacks),
				brokerCallsPerCheckout: per(after.brokerCalls === null || before.brokerCalls === null ? null : after.brokerCalls - before.brokerCalls),
				natsMessagesPerCheckout: per(after.natsMessages === null || before.natsMessages === null ? null : after.natsMessages - before.natsMessages),
				brokerCallsPerCheckoutByAction: byAction,
				statementsByQuery,
				...(timeline ? { latencyBySecond: timeline } : {}),
			};
			console.log(JSON.stringify(result));
			return result;
		};

		const closedLoop = async (clients: number, seconds: number) => {
			const latencies: number[] = [];
			const statuses: Record<string, number> = {};
			const deadline = performance.now() + seconds * 1000;
			const t0 = performance.now();
			await Promise.all(
				Array.from({ length: clients }, async (_, i) => {
					while (performance.now() < deadline) {
						const start = performance.now();
						const status = await checkout(i);
						latencies.push(performance.now() - start);
						statuses[status] = (statuses[status] ?? 0) + 1;
					}
				}),
			);
			return { latencies, statuses, elapsedS: (performance.now() - t0) / 1000 };
		};

		const openLoop = async (rate: number, seconds: number) => {
			const latencies: number[] = [];
			const statuses: Record<string, number> = {};
			const total = Math.round(rate * seconds);
			const t0 = performance.now();
			const inFlight: Promise<void>[] = [];
			// Latencies by the second of their intended send time: shows whether a tail is spread out
			// or one stall (a checkpoint, a pause) that every request of a second waited on.
			const bySecond: number[][] = Array.from({ length: Math.ceil(seconds) }, () => []);
			for (let i = 0; i < total; i++) {
				const intended = t0 + (i * 1000) / rate;
				const wait = intended - performance.now();
				if (wait > 1) await sleep(wait);
				inFlight.push(
					checkout(i).then(status => {
						const ms = performance.now() - intended;
						latencies.push(ms);
						bySecond[Math.floor(i / rate)]?.push(ms);
						statuses[status] = (statuses[status] ?? 0) + 1;
					}),
				);
			}
			await Promise.all(inFlight);
			const timeline = bySecond.map((l, second) => {
				const sorted = [...l].sort((a, b) => a - b);
				return { second, requests: l.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: percentile(sorted, 100) };
			});
			// From the first send to the last answer: below the offered rate when the system fell behind.
			return { latencies, statuses, elapsedS: (performance.now() - t0) / 1000, timeline };
		};

		// What the cluster costs doing nothing (timers, heartbeats, polls): background work that every
		// phase's per-checkout figure includes.
		console.log(`idle ${IDLE_S}s...`);
		const stopIdle = cpuMeter();
		await sleep(IDLE_S * 1000);
		const idleCpu = stopIdle();
		const idleCpuMsPerSecond = Object.fromEntries(Object.entries(idleCpu.byProcess).map(([g, ms]) => [g, Number((ms / IDLE_S).toFixed(1))]));
		console.log(`warming up ${WARMUP_S}s with ${CONCURRENCY} clients...`);
		await closedLoop(CONCURRENCY, WARMUP_S);
		await sleep(DRAIN_S * 1000);
		const closed = await measure(`closed loop, ${CONCURRENCY} clients, ${CLOSED_S}s`, () => closedLoop(CONCURRENCY, CLOSED_S));
		const open = await measure(`open loop, ${RATE}/s, ${OPEN_S}s`, () => openLoop(RATE, OPEN_S));
		const one = await measure(`one client, ${ONE_S}s`, () => closedLoop(1, ONE_S));

		const result = {
			benchmark: `checkout through the gateway (POST /api/v1/orders, tok_visa, 1 line of a random SKU out of ${SKUS})`,
			command: `npm run bench:checkout   # BENCH_CONCURRENCY=${CONCURRENCY} BENCH_CLOSED_S=${CLOSED_S} BENCH_RATE=${RATE} BENCH_OPEN_S=${OPEN_S} BENCH_ONE_S=${ONE_S} BENCH_SKUS=${SKUS}`,
			date: new Date().toISOString(),
			// The machine is shared: the load before the cluster started says how much else ran meanwhile.
			machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version, loadAverage1mBeforeStart: loadBefore, loadAverage1mAtEnd: Number(loadavg()[0].toFixed(2)) },
			topology: `5 node processes (gateway, identity, catalog, commerce, inventory) over NATS + PostgreSQL on one machine; ${ownServers ? "the bench's own nats-server and PostgreSQL 15 instance (pg_stat_statements)" : "the shared nats-server and PostgreSQL"}`,
			method: {
				cpu: "utime+stime from /proc/<pid>/stat of the 5 node processes, every PostgreSQL process of the instance and nats-server, sampled every 100 ms over the phase plus its drain",
				statements: "pg_stat_statements calls over this cluster's databases, transaction control (BEGIN/COMMIT/ROLLBACK/SAVEPOINT) not counted (given apart)",
				writes: "writeSyscallsPerCheckoutByProcess: write/writev calls (syscw of /proc/<pid>/io) over the phase plus its drain; for the node processes and nats-server these are socket writes (each message, query and answer sent), for postgres only its file writes (it sends on sockets with send(2), which syscw does not count); counts, so steadier than CPU on a shared host",
				commits: "pg_stat_database.xact_commit over this cluster's databases",
				brokerCalls: "moleculer_request_total (actions executed, local or remote) over the nodes, without api.* and $node.*; Moleculer events handled (moleculer_event_received_total, once per receiving node) listed as event:<name> beside them",
				natsMessages: "in_msgs of the bench's own nats-server (/varz): every message any client published, JetStream API and acknowledgements included",
				idle: "idleCpuMsPerSecond: CPU per second of every process over BENCH_IDLE_S with no load, before the warm-up (timers, heartbeats, polls); /proc counts 10 ms ticks, so a few seconds give coarse figures",
				sqlTime: "planMsPerCall/execMsPerCall per statement: pg_stat_statements total_plan_time/total_exec_time (track_planning on), server wall time",
				perCheckout: "phase totals, background work included, divided by the phase's CONFIRMED checkouts; top-level figures are the closed loop's",
			},
			checkoutsPerSecond: closed.checkoutsPerSecond,
			closedLoop: { clients: CONCURRENCY, latencyMs: closed.latencyMs },
			openLoop: { ratePerSecond: RATE, achievedPerSecond: open.checkoutsPerSecond, latencyMs: open.latencyMs },
			oneClient: { latencyMs: one.latencyMs },
			cpuMsPerCheckout: closed.cpuMsPerCheckout,
			idleCpuMsPerSecond: { total: Number((idleCpu.totalMs / IDLE_S).toFixed(1)), ...idleCpuMsPerSecond },
			sqlStatementsPerCheckout: closed.sqlStatementsPerCheckout,
			commitsPerCheckout: closed.commitsPerCheckout,
			brokerCallsPerCheckout: closed.brokerCallsPerCheckout,
			natsMessagesPerCheckout: closed.natsMessagesPerCheckout,
			errors: [closed, open, one].reduce((n, p) => n + p.requests - p.confirmed, 0),
			phases: { closedLoop: closed, openLoop: open, oneClient: one },
			target: { checkoutsPerSecond: 150, openLoopP99Ms: 250, oneClientP50Ms: 30, cpuMsPerCheckout: 15, sqlStatementsPerCheckout: 20, commitsPerCheckout: 10 },
		};
		mkdirSync(join(__dirname, "..", "..", "bench", "results"), { recursive: true });
		const file = process.env.BENCH_OUT ?? join(__dirname, "..", "..", "bench", "results", "checkout.json");
		writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
		console.log(JSON.stringify(result, null, 2));
		console.log(`written to ${file}`);
		if (process.env.BENCH_LOGS) console.log(cluster.logs().slice(-6000));
	} finally {
		await cluster.stop().catch((err: unknown) => console.error(err));
		await admin.close().catch(() => undefined);
		for (const s of [nats, pg]) {
			if (!s) continue;
			if (s.proc.exitCode === null) {
				const exited = new Promise(r => s.proc.once("exit", r));
				s.proc.kill(s === pg ? "SIGINT" : "SIGTERM");
				await exited;
			}
			rmSync(s.dir, { recursive: true, force: true });
		}
	}
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
