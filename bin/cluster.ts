/**
 * `npm run cluster`: the Swarm stack's topology on one machine — one node process per service
 * group (deploy/docker-stack.yml), talking over NATS, each service on its own PostgreSQL database.
 * Output is prefixed per node; Ctrl-C or SIGTERM stops every node gracefully.
 *
 * Environment (besides everything config/index.ts reads, passed through to the nodes):
 *   TRANSPORTER   default nats://127.0.0.1:4222
 *   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/postgres
 *   PORT          the gateway's port (default 3000); METRICS_PORT the first node's metrics port
 *                 (default 3030, the next nodes count up from it)
 *   SEED_DEMO     default true: the services load the demo catalog into an empty database
 *   CLUSTER_READY_TIMEOUT_S  how long to wait for every node and the gateway (default 90)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { type AddressInfo, connect, createServer } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { ServiceBroker } from "moleculer";
import { ConfigError, loadConfig } from "../config";
import { brokerOptions } from "../moleculer.config";
import { availableServices } from "../services";

/** The service groups of the stack file, in start order. */
export const GROUPS: { name: string; services: string[] }[] = [
	{ name: "gateway", services: ["api"] },
	{ name: "identity", services: ["auth", "customers", "users"] },
	{ name: "catalog", services: ["catalog", "search", "reviews"] },
	{ name: "commerce", services: ["cart", "orders", "payments"] },
	{ name: "inventory", services: ["warehouse", "fulfillment", "shipping"] },
];

const DEFAULTS = {
	TRANSPORTER: "nats://127.0.0.1:4222",
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

async function checkInfrastructure(transporter: string, databaseUrl: string): Promise<string[]> {
	const problems: string[] = [];
	const nats = new URL(transporter);
	if (!(await reachable(nats.hostname, Number(nats.port || 4222)))) {
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

/** A port free right now (PORT=0 in tests): the gateway binds it a moment later. */
function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const server = createServer();
		server.once("error", reject);
		server.listen(0, "127.0.0.1", () => {
			const { port } = server.address() as AddressInfo;
			server.close(() => resolve(port));
		});
	});
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
			// Port 0 (tests) stays 0: every node picks a free one.
			METRICS_PORT: String(basePort === 0 ? 0 : basePort + index),
		},
		stdio: ["ignore", "pipe", "pipe"],
		// Own process group: a terminal's Ctrl-C reaches only this parent, which then stops each
		// node exactly once.
		detached: true,
	});
	const node: Node = { name, nodeID, services, child, exited: false };
	const prefix = `${paint(color, name.padEnd(WIDTH))} | `;
	for (const stream of [child.stdout, child.stderr]) {
		if (!stream) continue;
		createInterface({ input: stream }).on("line", line => {
			process.stdout.write(prefix + line + "\n");
		});
	}
	return node;
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
	const transporter = c.TRANSPORTER ?? DEFAULTS.TRANSPORTER;
	const databaseUrl = process.env.DATABASE_URL ?? DEFAULTS.DATABASE_URL;

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

	const gatewayPort = c.PORT === 0 ? await freePort() : c.PORT;
	const env: NodeJS.ProcessEnv = {
		...process.env,
		TRANSPORTER: transporter,
		DATABASE_URL: databaseUrl,
		JWT_SECRET: c.JWT_SECRET,
		ADMIN_PASSWORD: c.ADMIN_PASSWORD,
		PORT: String(gatewayPort),
	};
	delete env.JWT_SECRET_FILE;
	delete env.ADMIN_PASSWORD_FILE;
	const started = Date.now();
	say(`starting ${groups.length} nodes over ${transporter}, databases on ${new URL(databaseUrl).host} (namespace '${c.NAMESPACE}')`);
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
	// Should this process end any other way, leave no nodes behind.
	process.on("exit", () => stopAll("SIGKILL"));

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
	while (!stopping) {
		const nodesUp = nodes.every(registered);
		if (nodesUp && (!gateway || (await httpStatus(`http://127.0.0.1:${gatewayPort}/health/ready`)) === 200)) break;
		if (Date.now() - started > timeoutMs) {
			const waiting = nodes.filter(n => !registered(n)).map(n => n.name);
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
		say(paint(1, `gateway listening on http://${host}:${gatewayPort}/api/v1  (docs: http://${host}:${gatewayPort}/api/docs)`));
	} else {
		say("no gateway in this build: reach the services with `npm run repl`");
	}
	if (!process.env.ADMIN_PASSWORD && !process.env.ADMIN_PASSWORD_FILE) {
		say(`admin login: ${c.ADMIN_EMAIL}, password in ${join(c.DATA_DIR, ".admin-password")}`);
	}
	const metrics = c.METRICS_ENABLED && c.METRICS_PORT ? `metrics on ports ${c.METRICS_PORT}-${c.METRICS_PORT + nodes.length - 1} (/metrics); ` : "";
	say(`${metrics}operator shell: npm run repl; Ctrl-C stops every node`);
}

if (require.main === module) {
	main().catch(err => {
		console.error("cluster failed:", err?.stack ?? err);
		process.exit(1);
	});
}
