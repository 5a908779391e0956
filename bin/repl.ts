/**
 * `npm run repl`: joins a running cluster (TRANSPORTER, NAMESPACE as the nodes use them) as an
 * operator node without services and opens moleculer-repl: `nodes`, `services`, `actions`,
 * `call orders.get --id ...`, `emit ...`, plus the platform's own commands, loaded from every
 * lib/repl/*-commands module (each exports an array of command definitions).
 *
 * Without TRANSPORTER it joins the cluster `npm run cluster` runs from the same DATA_DIR (its own
 * NATS server, credentials and TLS files, from DATA_DIR/cluster.json), else nats://127.0.0.1:4222.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { ServiceBroker } from "moleculer";
import { ConfigError, config } from "../config";
import { patchReplArgumentParser } from "../lib/repl/call-arguments";
import { brokerOptions } from "../moleculer.config";

export interface ReplCommand {
	command: string;
	description?: string;
	alias?: string | string[];
	options?: { option: string; description?: string }[];
	allowUnknownOptions?: boolean;
	parse?: (...args: any[]) => void;
	action: (broker: ServiceBroker, args: any, helpers: any) => unknown;
}

const DEFAULT_TRANSPORTER = "nats://127.0.0.1:4222";

function isCommand(value: unknown): value is ReplCommand {
	return typeof value === "object" && value !== null && typeof (value as ReplCommand).command === "string" && typeof (value as ReplCommand).action === "function";
}

/** Every command definition exported (default, or any exported array) by lib/repl/*-commands modules. */
export function loadCustomCommands(dir = join(__dirname, "..", "lib", "repl")): { commands: ReplCommand[]; problems: string[] } {
	const commands: ReplCommand[] = [];
	const problems: string[] = [];
	let files: string[];
	try {
		files = readdirSync(dir).filter(f => /-commands\.(js|ts)$/.test(f) && !f.endsWith(".d.ts"));
	} catch {
		return { commands, problems };
	}
	// Compiled output has both .js and .js.map; a source tree has .ts. Prefer .js when both exist.
	const byBase = new Map<string, string>();
	for (const f of files) {
		const base = f.replace(/\.(js|ts)$/, "");
		if (!byBase.has(base) || f.endsWith(".js")) byBase.set(base, f);
	}
	for (const file of [...byBase.values()].sort()) {
		try {
			const mod = require(join(dir, file));
			const exported: unknown[] = Array.isArray(mod) ? mod : Object.values(mod).flatMap(v => (Array.isArray(v) ? v : []));
			const found = exported.filter(isCommand);
			if (found.length === 0) problems.push(`${file}: exports no command definitions`);
			for (const cmd of found) {
				if (!commands.some(c => c.command === cmd.command)) commands.push(cmd);
			}
		} catch (err) {
			problems.push(`${file}: ${(err as Error).message}`);
		}
	}
	return { commands, problems };
}

/** The NATS settings of a running `npm run cluster` in this DATA_DIR, if there is one. */
export function runningCluster(env: NodeJS.ProcessEnv): Record<string, string> | undefined {
	const file = join(env.DATA_DIR || "./data", "cluster.json");
	if (!existsSync(file)) return undefined;
	try {
		const cluster = JSON.parse(readFileSync(file, "utf8")) as { pid: number; namespace: string; env: Record<string, string> };
		process.kill(cluster.pid, 0); // throws when that launcher is gone
		return { ...cluster.env, ...(cluster.namespace && !env.NAMESPACE ? { NAMESPACE: cluster.namespace } : {}) };
	} catch {
		return undefined;
	}
}

async function main(): Promise<void> {
	if (!process.env.TRANSPORTER) Object.assign(process.env, runningCluster(process.env) ?? {});
	process.env.TRANSPORTER ||= DEFAULT_TRANSPORTER;
	// An operator node serves no metrics: its port would clash with a node on the same machine.
	process.env.METRICS_ENABLED = "false";
	process.env.LOG_LEVEL ||= "warn";
	let c;
	try {
		c = config();
	} catch (err) {
		if (err instanceof ConfigError) {
			console.error(err.message);
			process.exit(78);
		}
		throw err;
	}

	const { commands, problems } = loadCustomCommands();
	const broker = new ServiceBroker(
		brokerOptions({
			nodeID: `repl-${hostname()}-${process.pid}`,
			metrics: false,
			tracing: false,
			logger: { type: "Console", options: { level: c.LOG_LEVEL, formatter: "short", colors: Boolean(process.stdout.isTTY) } },
			replOptions: { delimiter: "mc $", customCommands: commands as any },
		}),
	);
	for (const p of problems) broker.logger.warn(`REPL commands not loaded from ${p}`);
	// `call catalog.list --sort -price`: a dash value is a value (lib/repl/call-arguments.ts).
	patchReplArgumentParser();
	await broker.start();
	// Give the other nodes' INFO packets a moment so `nodes` shows the cluster at once.
	await waitForPeers(broker, 2000);
	const peers = broker.registry.nodes.toArray().filter((n: any) => !n.local && n.available);
	console.log(
		`Joined ${c.TRANSPORTER} (namespace '${c.NAMESPACE}') as ${broker.nodeID}: ${peers.length} other node(s) online` +
			(commands.length ? `; platform commands: ${commands.map(cmd => cmd.command.split(" ")[0]).join(", ")}` : "") +
			". Type `help`; `exit` (or Ctrl-D) leaves.",
	);
	broker.repl();
}

async function waitForPeers(broker: ServiceBroker, ms: number): Promise<void> {
	const until = Date.now() + ms;
	while (Date.now() < until) {
		if (broker.registry.nodes.toArray().some((n: any) => !n.local && n.available)) return;
		await new Promise(r => setTimeout(r, 100));
	}
}

if (require.main === module) {
	main().catch(err => {
		console.error("REPL failed to start:", err?.message ?? err);
		process.exit(1);
	});
}
