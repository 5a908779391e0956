/**
 * `npm run bench:read` (issue 10): reads through the cluster topology against a bare `node:http`
 * server serving the same JSON, in the same run, with wrk (Debian package `wrk`).
 *
 * Topology: two gateway replicas (as the Swarm stack runs them), identity, catalog (catalog,
 * search, reviews), commerce, inventory — one process each, over this run's own nats-server
 * (JetStream) and, when `redis-server` is installed, this run's own Redis as the shared read cache
 * (CACHER=redis://…; otherwise each process's in-memory LRU), PostgreSQL from DATABASE_URL.
 * Each read is measured with one wrk per gateway replica at the same time (the load split as a
 * load balancer would), then the same JSON from the bare server.
 *
 * Reads: `product` (GET /products/:id), `list` (GET /products with category, brand, price range
 * and sort), `search` (GET /search with a transposition typo), `cart` (GET /cart, authenticated).
 *
 * Per read: req/s (sum over the replicas), p50/p99 latency (ms; the higher of the replicas),
 * CPU ms per request (user + system time from /proc of every process of the topology — nodes,
 * nats-server, redis-server — over the measured window, divided by the requests), and the bare
 * server's req/s and CPU. Results: bench/results/read.json `{ reads: [...] }`.
 *
 * BENCH_DURATION_S (default 10), BENCH_WARMUP_S (default 3), BENCH_CONNECTIONS (default 32 per
 * replica; the bare server gets the sum).
 * BENCH_READS (e.g. `product,cart`: only these), BENCH_PROFILE_DIR (every node runs with
 * `node --cpu-prof` into that directory, profiles written when the nodes stop).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { TestCluster } from "../test/e2e/support/harness";
import { freePort } from "../test/support/ports";

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const TICKS = 100; // USER_HZ on Linux

interface WrkResult {
	requests: number;
	seconds: number;
	p50Ms: number;
	p99Ms: number;
	errors: number;
}

const LUA = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKJSON {\\"requests\\":%d,\\"us\\":%d,\\"p50\\":%d,\\"p99\\":%d,\\"errors\\":%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
`;


/** user + system CPU of a process so far (ms). */
function cpuMs(pid: number): number {
	try {
		const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
		const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
		return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
	} catch {
		return 0;
	}
}
const totalCpu = (pids: number[]) => pids.reduce((n, p) => n + cpuMs(p), 0);

function wrk(url: string, connections: number, seconds: number, headers: Record<string, string>, script: string): Promise<WrkResult> {
	const args = ["-t1", `-c${connections}`, `-d${seconds}s`, "--latency", "-s", script];
	for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
	args.push(url);
	return new Promise((resolve, reject) => {
		const child = spawn("wrk", args, { stdio: ["ignore", "pipe", "pipe"] });
		let out = "";
		child.stdout.on("data", b => (out += b));
		child.stderr.on("data", b => (out += b));
		child.on("error", reject);
		child.on("exit", () => {
			const m = /WRKJSON (\{.*\})/.exec(out);
			if (!m) return reject(new Error(`wrk gave no summary:\n${out}`));
			const r = JSON.parse(m[1]);
			resolve({ requests: r.requests, seconds: r.us / 1e6, p50Ms: r.p50 / 1000, p99Ms: r.p99 / 1000, errors: r.errors });
		});
	});
}

/** Runs wrk against every url at once; returns the combined figures and the CPU the given processes spent meanwhile. */
async function measure(urls: string[], headers: Record<string, string>, script: string, pids: () => number[], connections: number) {
	await Promise.all(urls.map(u => wrk(u, connections, WARMUP_S, headers, script)));
	const cpu0 = totalCpu(pids());
	const results = await Promise.all(urls.map(u => wrk(u, connections, DURATION_S, headers, script)));
	const cpu = totalCpu(pids()) - cpu0;
	const requests = results.reduce((n, r) => n + r.requests, 0);
	const seconds = Math.max(...results.map(r => r.seconds));
	return {
		reqPerSecond: requests / seconds,
		p50Ms: Math.max(...results.map(r => r.p50Ms)),
		p99Ms: Math.max(...results.map(r => r.p99Ms)),
		errors: results.reduce((n, r) => n + r.errors, 0),
		cpuMsPerRequest: requests ? cpu / requests : 0,
	};
}

function startProcess(cmd: string, args: string[]): ChildProcess {
	const child = spawn(cmd, args, { stdio: "ignore" });
	return child;
}

async function waitPort(port: number, timeoutMs = 10_000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const ok = await new Promise<boolean>(resolve => {
			const s = require("node:net").connect({ host: "127.0.0.1", port });
			s.once("connect", () => (s.destroy(), resolve(true)));
			s.once("error", () => resolve(false));
		});
		if (ok) return;
		if (Date.now() > deadline) throw new Error(`port ${port} never opened`);
		await new Promise(r => setTimeout(r, 100));
	}
}

function has(bin: string): boolean {
	try {
		execFileSync("which", [bin], { stdio: "ignore" });
		return true;
	} catch {
		return false;
	}
}

async function main(): Promise<void> {
	if (!has("wrk")) throw new Error("wrk is not installed (Debian: apt-get install -y wrk)");
	const dir = mkdtempSync(join(tmpdir(), "mc-bench-read-"));
	const script = join(dir, "report.lua");
	writeFileSync(script, LUA);
	const infra: ChildProcess[] = [];
	const natsPort = await freePort();
	infra.push(startProcess("nats-server", ["-a", "127.0.0.1", "-p", String(natsPort), "-js", "-sd", join(dir, "js")]));
	await waitPort(natsPort);
	let cacher = "";
	if (has("redis-server")) {
		const redisPort = await freePort();
		infra.push(startProcess("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]));
		await waitPort(redisPort);
		cacher = `redis://127.0.0.1:${redisPort}/0`;
	}
	process.env.E2E_NATS_URL = `nats://127.0.0.1:${natsPort}`;
	const cluster = new TestCluster(
		[
			{ name: "gateway-1", services: ["api"] },
			{ name: "gateway-2", services: ["api"] },
			{ name: "identity", services: ["auth", "customers", "users"] },
			{ name: "catalog", services: ["catalog", "search", "reviews"] },
			{ name: "commerce", services: ["cart", "orders", "payments"] },
			{ name: "inventory", services: ["warehouse", "fulfillment", "shipping"] },
		],
		{ ...(process.env.BENCH_PROFILE_DIR ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}` } : {}), AUTH_RATE_LIMIT_MAX: "100000", RATE_LIMIT_MAX: "1000000", LOG_LEVEL: "error", TRANSPORTER: `nats://127.0.0.1:${natsPort}`, ...(cacher ? { CACHER: cacher } : {}) },
	);
	const bare = createServer();
	const stopAll = async () => {
		bare.close();
		await cluster.stop().catch(() => undefined);
		for (const p of infra) p.kill("SIGTERM");
	};
	console.log(`starting the cluster topology (2 gateway replicas + 4 nodes, own nats-server${cacher ? ", own redis-server as the read cache" : ", in-memory caches"})...`);
	try {
		await cluster.start();
		await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/products?pageSize=1")).status === 200, 60_000, "catalog");
		await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/search?q=headphones")).body?.total > 0, 60_000, "search index");
		const customer = await cluster.registerCustomer("benchread");
		const product = (await cluster.http("GET", "/api/v1/products?pageSize=1")).body.items[0];
		await cluster.waitUntil(async () => (await cluster.http("POST", "/api/v1/cart/items", { token: customer.accessToken, body: { productId: product.id, quantity: 1 } })).status < 300, 30_000, "cart");
		const categories = (await cluster.http("GET", "/api/v1/categories")).body.items;
		const cat = categories.find((c: any) => !c.parentId) ?? categories[0];
		const reads: { name: string; path: string; token?: string }[] = [
			{ name: "product", path: `/api/v1/products/${product.id}` },
			{ name: "list", path: `/api/v1/products?category=${encodeURIComponent(cat.slug)}&minPrice=100&maxPrice=100000&sort=price&pageSize=20` },
			{ name: "search", path: "/api/v1/search?q=haedphones" },
			{ name: "cart", path: "/api/v1/cart", token: customer.accessToken },
		];
		const pids = () => [...Object.values(cluster.pids()), ...infra.map(p => p.pid!).filter(Boolean)];
		// The first start loads the demo catalog: its events (indexing, stock, their cache cleans)
		// run for a while. Measure a settled cluster: under 5 % of a core for 2 s in a row (at most 90 s).
		const settleUntil = Date.now() + 90_000;
		for (let quiet = 0; quiet < 2 && Date.now() < settleUntil; ) {
			const before = totalCpu(pids());
			await new Promise(r => setTimeout(r, 1000));
			quiet = totalCpu(pids()) - before < 50 ? quiet + 1 : 0;
		}
		const gateways = cluster.gateways();
		const results = [];
		const only = process.env.BENCH_READS?.split(",");
		for (const read of reads.filter(r => !only || only.includes(r.name))) {
			const headers: Record<string, string> = read.token ? { Authorization: `Bearer ${read.token}` } : {};
			const sample = await cluster.http("GET", read.path, { token: read.token });
			if (sample.status !== 200) throw new Error(`${read.name}: ${sample.status} ${JSON.stringify(sample.body)}`);
			const through = await measure(gateways.map(g => `http://127.0.0.1:${cluster.httpPort(g)}${read.path}`), headers, script, pids, CONNECTIONS);
			// The bare server: the same bytes and content type, no framework.
			const bytes = Buffer.from(JSON.stringify(sample.body));
			bare.removeAllListeners("request");
			bare.on("request", (_req, res) => {
				res.writeHead(200, { "Content-Type": "application/json; charset=utf-8", "Content-Length": bytes.length });
				res.end(bytes);
			});
			if (!bare.listening) await new Promise<void>(r => bare.listen(0, "127.0.0.1", r));
			const barePort = (bare.address() as AddressInfo).port;
			const bareRun = await measure([`http://127.0.0.1:${barePort}${read.path}`], headers, script, () => [process.pid], CONNECTIONS * gateways.length);
			const row = {
				name: read.name,
				reqPerSecond: Math.round(through.reqPerSecond),
				bareReqPerSecond: Math.round(bareRun.reqPerSecond),
				ratioToBare: Number((through.reqPerSecond / bareRun.reqPerSecond).toFixed(3)),
				cpuMsPerRequest: Number(through.cpuMsPerRequest.toFixed(3)),
				bareCpuMsPerRequest: Number(bareRun.cpuMsPerRequest.toFixed(3)),
				p50Ms: Number(through.p50Ms.toFixed(2)),
				p99Ms: Number(through.p99Ms.toFixed(2)),
				errors: through.errors,
			};
			console.log(JSON.stringify(row));
			results.push(row);
		}
		mkdirSync(join(__dirname, "..", "..", "bench", "results"), { recursive: true });
		const out = {
			date: new Date().toISOString(),
			machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
			setup: {
				topology: "2 gateway replicas, identity, catalog+search+reviews, commerce, inventory (one process each)",
				cache: cacher ? "Redis (own redis-server)" : "in-memory LRU per process",
				durationS: DURATION_S,
				warmupS: WARMUP_S,
				connectionsPerReplica: CONNECTIONS,
				cpu: "user+system from /proc of every node, nats-server and redis-server (bare: its own process; wrk excluded)",
				note: "the bare server runs in this bench process; other work on the machine during the run is not excluded",
			},
			reads: results,
		};
		writeFileSync(join(__dirname, "..", "..", "bench", "results", "read.json"), JSON.stringify(out, null, 2) + "\n");
		console.log("written to bench/results/read.json");
	} finally {
		await stopAll();
	}
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
