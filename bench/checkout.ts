/**
 * `npm run bench:checkout`: concurrent checkouts through the gateway against the cluster topology
 * (gateway, identity, catalog, commerce, inventory as separate processes over NATS and
 * PostgreSQL). Writes throughput, latency percentiles and error counts to
 * bench/results/checkout.json.
 *
 * BENCH_CONCURRENCY (default 32), BENCH_DURATION_S (default 20), BENCH_WARMUP_S (default 5).
 */
import { writeFileSync, mkdirSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { TestCluster } from "../test/e2e/support/harness";

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 20);
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 5);

function percentile(sorted: number[], p: number): number {
	if (!sorted.length) return 0;
	return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function main(): Promise<void> {
	const cluster = new TestCluster(
		[
			{ name: "gateway", services: ["api"] },
			{ name: "identity", services: ["auth", "customers", "users"] },
			{ name: "catalog", services: ["catalog"] },
			{ name: "commerce", services: ["cart", "orders", "payments"] },
			{ name: "inventory", services: ["warehouse", "fulfillment", "shipping"] },
		],
		{ AUTH_RATE_LIMIT_MAX: "100000", RATE_LIMIT_MAX: "1000000", LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "error" },
	);
	console.log("starting the cluster topology (5 node processes, NATS, PostgreSQL)...");
	await cluster.start();
	try {
		await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/products?pageSize=1")).status === 200, 60_000, "catalog");
		await cluster.waitUntil(async () => (await cluster.http("POST", "/api/v1/auth/login", { body: { email: "x@example.com", password: "nope" } })).status === 401, 60_000, "identity");
		const admin = (await cluster.loginAdmin()).accessToken;
		await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/orders", { token: admin })).status === 200, 60_000, "orders");
		await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/admin/inventory/HP-1001", { token: admin })).status === 200, 60_000, "warehouse");
		const categories = (await cluster.http("GET", "/api/v1/categories")).body.items;
		const product = (await cluster.http("POST", "/api/v1/products", { token: admin, body: { sku: "BENCH-0001", name: "Benchmark Headphones", brand: "Aurora", categoryId: categories[0].id, price: { amount: 2999, currency: "USD" }, weightGrams: 300 } })).body;
		for (const w of ["wh-east", "wh-west"]) await cluster.http("PUT", `/api/v1/admin/inventory/${product.sku}`, { token: admin, body: { warehouseId: w, onHand: 5_000_000 } });
		const customers = await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => cluster.registerCustomer(`bench${i}`)));
		const body = { shippingAddress: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, shippingMethod: "standard", paymentToken: "tok_visa", items: [{ productId: product.id, quantity: 1 }] };

		const latencies: number[] = [];
		const statuses: Record<string, number> = {};
		let measuring = false;
		let stop = false;
		let seq = 0;
		const worker = async (i: number) => {
			while (!stop) {
				const t0 = performance.now();
				let status: string;
				try {
					const res = await cluster.http("POST", "/api/v1/orders", { token: customers[i].accessToken, body, headers: { "idempotency-key": `bench-${i}-${seq++}` } });
					status = res.status === 201 ? (res.body.status === "CONFIRMED" ? "201 CONFIRMED" : `201 ${res.body.status} ${res.body.failureReason ?? ""}`.trim()) : String(res.status);
				} catch (err) {
					status = `error ${(err as Error).name}`;
				}
				if (measuring) {
					latencies.push(performance.now() - t0);
					statuses[status] = (statuses[status] ?? 0) + 1;
				}
			}
		};
		console.log(`warming up ${WARMUP_S}s, then measuring ${DURATION_S}s with ${CONCURRENCY} concurrent clients...`);
		const workers = customers.map((_, i) => worker(i));
		await new Promise(r => setTimeout(r, WARMUP_S * 1000));
		measuring = true;
		const t0 = performance.now();
		await new Promise(r => setTimeout(r, DURATION_S * 1000));
		measuring = false;
		const elapsedS = (performance.now() - t0) / 1000;
		stop = true;
		await Promise.all(workers);

		const sorted = [...latencies].sort((a, b) => a - b);
		const confirmed = statuses["201 CONFIRMED"] ?? 0;
		const result = {
			benchmark: "checkout through the gateway (POST /api/v1/orders, tok_visa, 1 line)",
			command: `BENCH_CONCURRENCY=${CONCURRENCY} BENCH_DURATION_S=${DURATION_S} npm run bench:checkout`,
			date: new Date().toISOString(),
			machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version },
			topology: "5 node processes (gateway, identity, catalog, commerce, inventory) over NATS + PostgreSQL on one machine",
			concurrency: CONCURRENCY,
			durationS: Number(elapsedS.toFixed(2)),
			requests: latencies.length,
			checkoutsPerSecond: Number((confirmed / elapsedS).toFixed(1)),
			latencyMs: { p50: Number(percentile(sorted, 50).toFixed(1)), p95: Number(percentile(sorted, 95).toFixed(1)), p99: Number(percentile(sorted, 99).toFixed(1)), max: Number((sorted[sorted.length - 1] ?? 0).toFixed(1)) },
			statuses,
			errors: latencies.length - confirmed,
			target: { checkoutsPerSecond: 300, p99Ms: 250, errors: 0 },
		};
		mkdirSync(join(__dirname, "..", "..", "bench", "results"), { recursive: true });
		const file = join(__dirname, "..", "..", "bench", "results", "checkout.json");
		writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
		console.log(JSON.stringify(result, null, 2));
		console.log(`written to ${file}`);
		if (process.env.BENCH_LOGS) console.log(cluster.logs().slice(-6000));
	} finally {
		await cluster.stop();
	}
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
