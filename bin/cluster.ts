/**
 * `npm run cluster`: the Swarm stack's topology on one machine — one node process per service
 * group (deploy/docker-stack.yml), talking over NATS, each service on its own PostgreSQL database.
 * Output is prefixed per node; Ctrl-C or SIGTERM stops every node gracefully.
 *
 * NATS: unless TRANSPORTER is given, it runs its own nats-server with the Swarm stack's
 * configuration (deploy/nats/nats.conf: the cluster's credentials, mutual TLS, JetStream) on a
 * port the server binds itself; credentials and certificates are generated once into DATA_DIR
 * and every node connects with them. `npm run repl` finds that server through
 * DATA_DIR/cluster.json. Without nats-server it falls back to nats://127.0.0.1:4222 (say so).
 *
 * Environment (besides everything config/index.ts reads, passed through to the nodes):
 *   TRANSPORTER   an existing NATS to use instead (with NATS_USER/NATS_PASSWORD/NATS_TLS_* if it wants them)
 *   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/postgres
 *   PORT          the gateway's port (default 3000; 0 = any free port: the gateway binds it and
 *                 reports it); METRICS_PORT the first node's metrics port (default 3030, the next
 *                 nodes count up from it; 0 = each node binds any free port and reports it)
 *   SEED_DEMO     default true: the services load the demo catalog into an empty database
 *   CLUSTER_READY_TIMEOUT_S  how long to wait for every node and the gateway (default 90)
 *   CACHER        the read cache (lib/cache.ts); unset: Redis at 127.0.0.1:6379 when one answers
 *                 there (shared by every node, as in the stack), else an in-memory LRU per node
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { ServiceBroker } from "moleculer";
import { ConfigError, loadConfig } from "../config";
import { NatsServerProcess, ensureCertificates, findNatsServer } from "../lib/ops/nats-server";
import { brokerOptions } from "../moleculer.config";
import { availableServices } from "../services";
import type { NodeStarted } from "./start";

/** The service groups of the stack file, in start order. */
export const GROUPS: { name: string; services: string[] }[] = [
	{ name: "gateway", services: ["api"] },
	{ name: "identity", services: ["auth", "customers", "users"] },
	{ name: "catalog", services: ["catalog", "search", "reviews"] },
	{ name: "commerce", services: ["cart", "orders", "payments"] },
	{ name: "inventory", services: ["warehouse", "fulfillment", "shipping"] },
];

/** Where `npm run repl` finds the NATS server this launcher started (see `ClusterFile`). */
export const CLUSTER_FILE = "cluster.json";

/** DATA_DIR/cluster.json while a cluster with its own NATS server runs. */
export interface ClusterFile {
	pid: number;
	namespace: string;
	env: Record<string, string>;
}

const OPEN_NATS = "nats://127.0.0.1:4222";
const NATS_USER = "mc";

const DEFAULTS = {
	DATABASE_URL: "postgres://postgres@127.0.0.1:5432/postgres",
	SEED_DEMO: "true",
};

const COLORS = [36, 33, 35, 32, 34, 31];
const useColor = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
const paint = (code: number, s: string) => (useColor ? `\x1b[${code}m${s}\x1b[0m` : s);
const WIDTH = Math.max(...GROUPS.map(g => g.name.length), "cluster".length);
const say = (msg: string) => console.log(`${paint(1, "cluster".padEnd(WIDTH))} | ${msg}`);

interface Node {
	name: string;
	nodeID: string;
	services: string[];
	child: ChildProcess;
	exited: boolean;
	/** What the node reported once started: its node id and the ports it bound. */
	started?: NodeStarted;
}

/** Resolves when host:port accepts a TCP connection within the timeout. */
function reachable(host: string, port: number, timeoutMs = 1500): Promise<boolean> {
	return new Promise(resolve => {
		const socket = connect({ host, port });
		const done = (ok: boolean) => {
			socket.destroy();
			resolve(ok);
		};
		socket.setTimeout(timeoutMs, () => done(false));
		socket.once("connect", () => done(true));
		socket.once("error", () => done(false));
	});
}

async function checkInfrastructure(transporter: string | undefined, databaseUrl: string): Promise<string[]> {
	const problems: string[] = [];
	const nats = transporter ? new URL(transporter) : undefined;
	if (nats && !(await reachable(nats.hostname, Number(nats.port || 4222)))) {
		problems.push(
			`NATS is not reachable at ${transporter}. Start it, e.g.:\n` +
				"    nats-server -js   (or: docker run -d -p 4222:4222 nats:2.10-alpine -js)",
		);
	}
	const pg = new URL(databaseUrl);
	if (!(await reachable(pg.hostname, Number(pg.port || 5432)))) {
		problems.push(
			`PostgreSQL is not reachable at ${pg.hostname}:${pg.port || 5432}. Start it, e.g.:\n` +
				"    pg_ctlcluster <version> main start   (or: docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16)",
		);
	}
	return problems;
}

async function httpStatus(url: string): Promise<number> {
	try {
		const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
		await res.arrayBuffer();
		return res.status;
	} catch {
		return 0;
	}
}

function startNode(name: string, services: string[], index: number, env: NodeJS.ProcessEnv, basePort: number): Node {
	const nodeID = `${hostname()}-${name}`;
	const color = COLORS[index % COLORS.length];
	const child = spawn(process.execPath, [join(__dirname, "start.js")], {
		env: {
			...env,
			SERVICES: services.join(","),
			NODE_ID: nodeID,
			// Port 0 (tests) stays 0: every node binds any free one and reports it.
			METRICS_PORT: String(basePort === 0 ? 0 : basePort + index),
		},
		// The IPC channel carries the node's NodeStarted report (the ports it bound).
		stdio: ["ignore", "pipe", "pipe", "ipc"],
		// Own process group: a terminal's Ctrl-C reaches only this parent, which then stops each
		// node exactly once.
		detached: true,
	});
	const node: Node = { name, nodeID, services, child, exited: false };
	child.on("message", (msg: any) => {
		if (msg?.type === "mc:node-started") node.started = msg as NodeStarted;
	});
	const prefix = `${paint(color, name.padEnd(WIDTH))} | `;
	for (const stream of [child.stdout, child.stderr]) {
		if (!stream) continue;
		createInterface({ input: stream }).on("line", line => {
			process.stdout.write(prefix + line + "\n");
		});
	}
	return node;
}

/** A secret generated once into DATA_DIR (like the JWT key of the embedded mode). */
function persistedSecret(dataDir: string, name: string): string {
	const file = join(resolve(dataDir), name);
	if (existsSync(file)) return readFileSync(file, "utf8").trim();
	mkdirSync(resolve(dataDir), { recursive: true });
	const value = randomBytes(24).toString("base64url");
	writeFileSync(file, value, { mode: 0o600, flag: "wx" });
	return value;
}

/**
 * This cluster's own NATS server with the stack's configuration; resolves with the environment
 * every node needs to reach it (URL, credentials, TLS files).
 */
async function startOwnNats(dataDir: string): Promise<{ server: NatsServerProcess; env: Record<string, string> }> {
	const dir = join(resolve(dataDir), "nats");
	const tls = ensureCertificates(join(dir, "tls"));
	const password = persistedSecret(dataDir, ".nats-password");
	const server = new NatsServerProcess({ user: NATS_USER, password, tls, storeDir: join(dir, "jetstream") });
	await server.start();
	return {
		server,
		env: {
			TRANSPORTER: server.url,
			NATS_USER,
			NATS_PASSWORD: password,
			NATS_TLS_CA_FILE: tls.ca,
			NATS_TLS_CERT_FILE: tls.clientCert,
			NATS_TLS_KEY_FILE: tls.clientKey,
		},
	};
}

async function main(): Promise<void> {
	for (const [key, value] of Object.entries(DEFAULTS)) {
		if (!process.env[key]) process.env[key] = value;
	}
	let c;
	try {
		// Generates JWT_SECRET / ADMIN_PASSWORD once into DATA_DIR when not given; every node gets the same.
		c = loadConfig(process.env);
	} catch (err) {
		if (err instanceof ConfigError) {
			console.error(err.message);
			process.exit(78);
		}
		throw err;
	}
	const databaseUrl = process.env.DATABASE_URL ?? DEFAULTS.DATABASE_URL;
	// An explicit TRANSPORTER is used as given; else our own authenticated server, when we can run one.
	const ownNats = !c.TRANSPORTER && findNatsServer() !== undefined;
	if (!c.TRANSPORTER && !ownNats) say(`nats-server is not installed: using ${OPEN_NATS} as it is (no credentials, no TLS)`);
	const transporter = c.TRANSPORTER ?? (ownNats ? undefined : OPEN_NATS);

	const available = new Set(availableServices());
	const plan = GROUPS.map(g => ({ name: g.name, services: g.services.filter(s => available.has(s)) }));
	for (const g of plan.filter(p => p.services.length === 0)) say(`skipping ${g.name}: none of its services is in this build yet`);
	const groups = plan.filter(p => p.services.length > 0);
	if (groups.length === 0) {
		console.error("No services in this build (services/index.ts finds none); run `npm run build` first.");
		process.exit(1);
	}

	const problems = await checkInfrastructure(transporter, databaseUrl);
	if (problems.length) {
		for (const p of problems) console.error(p);
		process.exit(1);
	}

	let nats: NatsServerProcess | undefined;
	let natsEnv: Record<string, string> = { TRANSPORTER: transporter! };
	const clusterFile = join(resolve(c.DATA_DIR), CLUSTER_FILE);
	if (ownNats) {
		try {
			({ server: nats, env: natsEnv } = await startOwnNats(c.DATA_DIR));
		} catch (err) {
			console.error(`Could not start this cluster's NATS server: ${(err as Error).message}`);
			process.exit(1);
		}
		say(`NATS (JetStream, credentials, mutual TLS: deploy/nats/nats.conf) listening on ${natsEnv.TRANSPORTER}, pid ${nats.pid}`);
		const file: ClusterFile = { pid: process.pid, namespace: c.NAMESPACE, env: natsEnv };
		writeFileSync(clusterFile, JSON.stringify(file, null, 2), { mode: 0o600 });
	}
	// The monitor below and every node connect with the same settings.
	Object.assign(process.env, natsEnv);

	// The read cache: as configured, else a local Redis when there is one (as the stack has), else per node in memory.
	const cacher = process.env.CACHER ?? ((await reachable("127.0.0.1", 6379, 500)) ? "redis://127.0.0.1:6379/0" : undefined);
	say(cacher && cacher !== "off" ? `read cache: Redis at ${new URL(cacher).host}` : cacher === "off" ? "read cache: off" : "read cache: in memory per node (no Redis at 127.0.0.1:6379; set CACHER=redis://… to share one)");
	const env: NodeJS.ProcessEnv = {
		...process.env,
		...(cacher ? { CACHER: cacher } : {}),
		...natsEnv,
		DATABASE_URL: databaseUrl,
		JWT_SECRET: c.JWT_SECRET,
		ADMIN_PASSWORD: c.ADMIN_PASSWORD,
		PORT: String(c.PORT),
	};
	delete env.JWT_SECRET_FILE;
	delete env.ADMIN_PASSWORD_FILE;
	delete env.NATS_PASSWORD_FILE;
	const started = Date.now();
	say(`starting ${groups.length} nodes over ${natsEnv.TRANSPORTER}, databases on ${new URL(databaseUrl).host} (namespace '${c.NAMESPACE}')`);
	const nodes = groups.map((g, i) => startNode(g.name, g.services, i, env, c.METRICS_PORT));

	let stopping = false;
	let crashed = false;
	let stopMonitor = async (): Promise<void> => undefined;
	const allExited = () => nodes.every(n => n.exited);
	const stopAll = (signal: NodeJS.Signals) => {
		for (const n of nodes) {
			if (!n.exited) n.child.kill(signal);
		}
	};
	const shutdown = async (reason: string) => {
		if (stopping) {
			say("second signal: killing every node now");
			stopAll("SIGKILL");
			return;
		}
		stopping = true;
		await stopMonitor().catch(err => say(`cluster monitor did not stop cleanly: ${err.message}`));
		say(`${reason}: stopping ${nodes.filter(n => !n.exited).length} nodes (in-flight requests finish first)`);
		stopAll("SIGTERM");
		const deadline = Date.now() + c.SHUTDOWN_TIMEOUT_MS + 5000;
		while (!allExited() && Date.now() < deadline) await new Promise(r => setTimeout(r, 100));
		if (!allExited()) {
			say(`nodes still running after ${c.SHUTDOWN_TIMEOUT_MS + 5000} ms: ${nodes.filter(n => !n.exited).map(n => n.name).join(", ")}; killing them`);
			stopAll("SIGKILL");
		}
		if (nats) {
			await nats.stop();
			rmSync(clusterFile, { force: true });
		}
		say("stopped");
		process.exit(crashed ? 1 : 0);
	};

	for (const n of nodes) {
		n.child.on("exit", (code, signal) => {
			n.exited = true;
			if (stopping) return;
			crashed = true;
			say(`${n.name} exited unexpectedly (${signal ?? `code ${code}`}); stopping the cluster`);
			void shutdown("node failure");
		});
	}
	process.on("SIGINT", () => void shutdown("SIGINT"));
	process.on("SIGTERM", () => void shutdown("SIGTERM"));
	process.on("SIGHUP", () => void shutdown("SIGHUP"));
	// Should this process end any other way, leave no nodes (and no NATS server) behind.
	process.on("exit", () => {
		stopAll("SIGKILL");
		if (nats?.pid) {
			try {
				process.kill(nats.pid, "SIGKILL");
			} catch {
				// already gone
			}
		}
	});

	// Until the cluster is ready, the parent joins it as a service-less node to see when every node
	// has registered its services (independent of log level or format).
	const monitor = new ServiceBroker(
		brokerOptions({
			nodeID: `${hostname()}-cluster-monitor-${process.pid}`,
			logger: false,
			metrics: false,
			tracing: false,
			// This process's signal handling is its own (shutdown above).
			skipProcessEventRegistration: true,
		}),
	);
	await monitor.start();
	stopMonitor = () => monitor.stop();
	const registered = (n: Node) => {
		const info: any = monitor.registry.nodes.get(n.nodeID);
		const names = new Set((info?.available ? (info.services ?? []) : []).map((s: any) => s.name));
		return n.services.every(s => names.has(s));
	};

	const gateway = nodes.find(n => n.services.includes("api"));
	const timeoutMs = Number(process.env.CLUSTER_READY_TIMEOUT_S ?? 90) * 1000;
	// With PORT=0 the gateway's port is known once it reports it.
	const gatewayPort = () => gateway?.started?.httpPort ?? null;
	while (!stopping) {
		const nodesUp = nodes.every(registered) && nodes.every(n => n.started);
		if (nodesUp && (!gateway || (gatewayPort() !== null && (await httpStatus(`http://127.0.0.1:${gatewayPort()}/health/ready`)) === 200))) break;
		if (Date.now() - started > timeoutMs) {
			const waiting = nodes.filter(n => !registered(n) || !n.started).map(n => n.name);
			say(`not ready after ${timeoutMs / 1000} s (waiting for: ${waiting.join(", ") || "/health/ready to answer 200"}); stopping`);
			crashed = true;
			await shutdown("start-up timeout");
			return;
		}
		await new Promise(r => setTimeout(r, 300));
	}
	if (stopping) return;
	// Its job is done; leave `nodes` in the REPL showing only the platform's nodes.
	stopMonitor = async () => undefined;
	await monitor.stop();
	const secs = ((Date.now() - started) / 1000).toFixed(1);
	say(paint(1, `ready in ${secs} s: ${nodes.map(n => `${n.name} (${n.services.join(",")})`).join(", ")}`));
	if (gateway) {
		const host = c.HOST === "0.0.0.0" ? "localhost" : c.HOST;
		say(paint(1, `gateway listening on http://${host}:${gatewayPort()}/api/v1  (docs: http://${host}:${gatewayPort()}/api/docs)`));
	} else {
		say("no gateway in this build: reach the services with `npm run repl`");
	}
	if (!process.env.ADMIN_PASSWORD && !process.env.ADMIN_PASSWORD_FILE) {
		say(`admin login: ${c.ADMIN_EMAIL}, password in ${join(c.DATA_DIR, ".admin-password")}`);
	}
	const metricsPorts = nodes.map(n => (n.started?.metricsPort ? `${n.name} ${n.started.metricsPort}` : "")).filter(Boolean);
	const metrics = metricsPorts.length ? `metrics and health (/metrics, /health/ready) on ports: ${metricsPorts.join(", ")}; ` : "";
	say(`${metrics}operator shell: npm run repl; Ctrl-C stops every node`);
}

if (require.main === module) {
	main().catch(err => {
		console.error("cluster failed:", err?.stack ?? err);
		process.exit(1);
	});
}
