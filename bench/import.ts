/**
 * `npm run bench:import`: imports a generated catalogue of 10,000 products (stock in two
 * warehouses) into the cluster topology (gateway, identity, catalog, commerce, inventory as
 * separate processes over NATS and PostgreSQL, SEED_DEMO off) with `npm run import` joining the
 * cluster, then measures how long search takes to have every product with its stock, a second
 * import of the same file (all unchanged) and a dry run. CPU time per phase is read from /proc
 * for the import process, each node process and this cluster's PostgreSQL backends (NATS is
 * shared with other work on the machine and reported apart). Writes bench/results/import.json.
 *
 * BENCH_ROWS (default 10000), BENCH_BATCH_SIZE (default 500), BENCH_SEARCH_WAIT_S (default 1200: how long
 * to wait for search; the figure says whether it got there).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { TestCluster } from "../test/e2e/support/harness";

const ROWS = Number(process.env.BENCH_ROWS ?? 10_000);
const BATCH = Number(process.env.BENCH_BATCH_SIZE ?? 500);
const SEARCH_WAIT_S = Number(process.env.BENCH_SEARCH_WAIT_S ?? 1200);
const CATEGORIES = ["cookware", "knives", "bakeware", "tableware", "garden-tools", "lighting", "textiles", "storage"];
const TICKS_PER_S = 100;

/** CPU seconds (user + system) a process has used so far; 0 once it is gone. */
function cpuSeconds(pid: number): number {
	try {
		const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
		const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
		return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
	} catch {
		return 0;
	}
}

/** PostgreSQL backends serving this cluster's databases (their process title names the database). */
function postgresBackends(prefix: string): number[] {
	const pids: number[] = [];
	for (const entry of readdirSync("/proc")) {
		if (!/^\d+$/.test(entry)) continue;
		try {
			if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(` ${prefix}`)) pids.push(Number(entry));
		} catch {
			// gone meanwhile
		}
	}
	return pids;
}

function natsServers(): number[] {
	return readdirSync("/proc")
		.filter(e => /^\d+$/.test(e))
		.filter(e => {
			try {
				return readFileSync(`/proc/${e}/comm`, "utf8").trim() === "nats-server";
			} catch {
				return false;
			}
		})
		.map(Number);
}

/**
 * CPU used by each group of processes between `start()` and the `stop()` it returns. Sampled every
 * 100 ms per process, so a PostgreSQL backend or an import process that exits meanwhile keeps
 * what it used (its /proc entry goes with it).
 */
function cpuMeter(cluster: TestCluster) {
	const groups = (extra: Record<string, number>) => {
		const out: [group: string, pid: number][] = Object.entries({ ...cluster.pids(), ...extra }).map(([name, pid]) => [name, pid]);
		for (const pid of postgresBackends(cluster.prefix)) out.push(["postgres", pid]);
		for (const pid of natsServers()) out.push(["nats (shared)", pid]);
		return out;
	};
	return {
		start(extra: Record<string, number> = {}) {
			const first = new Map<number, number>();
			const last = new Map<number, { group: string; s: number }>();
			const sample = () => {
				for (const [group, pid] of groups(extra)) {
					const s = cpuSeconds(pid);
					if (!s) continue;
					if (!first.has(pid)) first.set(pid, s);
					last.set(pid, { group, s });
				}
			};
			sample();
			const timer = setInterval(sample, 100);
			return () => {
				sample();
				clearInterval(timer);
				const ms: Record<string, number> = {};
				for (const [pid, { group, s }] of last) ms[group] = (ms[group] ?? 0) + Math.round((s - first.get(pid)!) * 1000);
				const totalMs = Object.entries(ms)
					.filter(([k]) => k !== "nats (shared)")
					.reduce((n, [, v]) => n + v, 0);
				return { totalMs, byProcess: ms };
			};
		},
	};
}

function catalogueFile(dir: string): string {
	const lines = ["sku,name,description,brand,category,price,weightGrams,attributes,images,stock:wh-east,stock:wh-west"];
	for (let i = 1; i <= ROWS; i++) {
		const sku = `BN-${String(i).padStart(6, "0")}`;
		lines.push(
			`${sku},Bench Product ${i},"Product ${i} of the import benchmark, with a description of ordinary length for a shop.",Brand${i % 25},${CATEGORIES[i % CATEGORIES.length]},${5 + (i % 200)}.${String(i % 100).padStart(2, "0")},${100 + (i % 3000)},"{""color"":""c${i % 12}"",""size"":${i % 9}}",https://img.example.com/${sku}.jpg,${i % 50},${(i * 7) % 40}`,
		);
	}
	const path = join(dir, "catalogue.csv");
	writeFileSync(path, `${lines.join("\n")}\n`);
	return path;
}

async function runImport(cluster: TestCluster, meter: ReturnType<typeof cpuMeter>, file: string, ...flags: string[]) {
	const t0 = performance.now();
	const child = spawn(process.execPath, [join(__dirname, "..", "bin", "import.js"), file, "--json", "--batch-size", String(BATCH), ...flags], {
		env: { ...process.env, ...cluster.nodeEnv(), SERVICES: "", LOG_LEVEL: "warn" },
		stdio: ["ignore", "pipe", "pipe"],
	});
	const stop = meter.start({ import: child.pid! });
	let stdout = "";
	let stderr = "";
	child.stdout.on("data", b => (stdout += b));
	child.stderr.on("data", b => (stderr += b));
	const [status] = (await once(child, "exit")) as [number | null];
	const seconds = (performance.now() - t0) / 1000;
	const cpu = stop();
	if (status !== 0) throw new Error(`import exited ${status}: ${stderr}`);
	const report = JSON.parse(stdout);
	return { seconds: Number(seconds.toFixed(2)), rowsPerSecond: Math.round(ROWS / seconds), report: { created: report.created, updated: report.updated, unchanged: report.unchanged, refused: report.refused.length, stock: report.stock }, cpu };
}

async function main(): Promise<void> {
	const cluster = new TestCluster(
		[
			{ name: "gateway", services: ["api"] },
			{ name: "identity", services: ["auth", "customers", "users"] },
			{ name: "catalog", services: ["catalog", "search", "reviews"] },
			{ name: "commerce", services: ["cart", "orders", "payments"] },
			{ name: "inventory", services: ["warehouse", "fulfillment", "shipping"] },
		],
		{ SEED_DEMO: "false", AUTH_RATE_LIMIT_MAX: "100000", RATE_LIMIT_MAX: "1000000", LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "error" },
	);
	const dir = mkdtempSync(join(tmpdir(), "mc-bench-import-"));
	console.log(`generating ${ROWS} rows; starting the cluster topology (5 node processes, NATS, PostgreSQL)...`);
	const file = catalogueFile(dir);
	await cluster.start();
	try {
		await cluster.waitUntil(async () => (await cluster.http("POST", "/api/v1/auth/login", { body: { email: "x@example.com", password: "nope" } })).status === 401, 60_000, "identity");
		const admin = (await cluster.loginAdmin()).accessToken;
		await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/warehouses", { token: admin })).status === 200, 60_000, "warehouse");
		await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/search?q=x")).status === 200, 60_000, "search");
		const parent = (await cluster.http("POST", "/api/v1/categories", { token: admin, body: { slug: "home", name: "Home" } })).body.id;
		for (const slug of CATEGORIES) await cluster.http("POST", "/api/v1/categories", { token: admin, body: { slug, name: slug, parentId: parent } });
		for (const [id, city] of [
			["wh-east", "Newark"],
			["wh-west", "Reno"],
		]) {
			await cluster.http("POST", "/api/v1/admin/warehouses", { token: admin, body: { id, name: id, address: { line1: "1 Dock Road", city, postalCode: "07114", country: "US" } } });
		}
		const meter = cpuMeter(cluster);

		console.log(`importing ${ROWS} products (batches of ${BATCH})...`);
		const first = await runImport(cluster, meter, file);
		console.log(JSON.stringify(first));

		console.log("waiting for search to have every product with its stock...");
		const t0 = performance.now();
		const stopSearch = meter.start();
		const searched = async () => (await cluster.http("GET", "/api/v1/search?pageSize=1&inStock=true")).body.total as number;
		let indexed = 0;
		while ((indexed = await searched()) !== inStockRows() && performance.now() - t0 < SEARCH_WAIT_S * 1000) await new Promise(r => setTimeout(r, 1000));
		const seconds = Number(((performance.now() - t0) / 1000).toFixed(2));
		// A read model slower than the wait is a figure too, not a failed benchmark.
		const searchCatchUp = { seconds, complete: indexed === inStockRows(), inStockIndexed: indexed, inStockExpected: inStockRows(), eventsPerSecond: Math.round((ROWS * 3) / seconds), cpu: stopSearch() };

		console.log("importing the same file again (every row unchanged)...");
		const second = await runImport(cluster, meter, file);
		console.log("dry run...");
		const dry = await runImport(cluster, meter, file, "--dry-run");

		const result = {
			benchmark: "catalogue import through npm run import joining the cluster (catalog.importProducts + warehouse.setStockMany in batches)",
			command: `BENCH_ROWS=${ROWS} BENCH_BATCH_SIZE=${BATCH} npm run bench:import`,
			date: new Date().toISOString(),
			machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version },
			topology: "5 node processes (gateway, identity, catalog+search+reviews, commerce, inventory) over NATS + PostgreSQL on one machine",
			rows: ROWS,
			stockColumns: 2,
			batchSize: BATCH,
			firstImport: first,
			searchCatchUpAfterImport: searchCatchUp,
			secondImportUnchanged: second,
			dryRun: dry,
			notes: "seconds are wall time of the import process (joining the cluster included); cpu.totalMs sums the import process, every node and this cluster's PostgreSQL backends; NATS is shared with the rest of the machine and shown apart. searchCatchUpAfterImport is the time from the end of the import until search answers every in-stock product (3 events per row: the product and its two stock rows).",
		};
		mkdirSync(join(__dirname, "..", "..", "bench", "results"), { recursive: true });
		const out = join(__dirname, "..", "..", "bench", "results", "import.json");
		writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
		console.log(JSON.stringify(result, null, 2));
		console.log(`written to ${out}`);
	} finally {
		await cluster.stop();
	}
}

/** Rows with some stock in either warehouse (the file's stock columns are i % 50 and 7i % 40). */
function inStockRows(): number {
	let n = 0;
	for (let i = 1; i <= ROWS; i++) if ((i % 50) + ((i * 7) % 40) > 0) n++;
	return n;
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
