/**
 * `npm run bench:search`: the search service over 10,000 products, queried at the service
 * (`broker.call("search.search")`, in process) with a mix of typo, prefix, filtered, faceted and
 * browse queries. Writes p50/p95/p99 and throughput to bench/results/search.json.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";

const PRODUCTS = Number(process.env.BENCH_PRODUCTS ?? 10_000);
const QUERIES = Number(process.env.BENCH_QUERIES ?? 5_000);

Object.assign(process.env, { NODE_ENV: "test", DATA_DIR: mkdtempSync(join(tmpdir(), "mc-bench-search-")), METRICS_ENABLED: "false", SEED_DEMO: "false", LOG_LEVEL: "warn", JWT_SECRET: "bench-secret-bench-secret-bench-secret-123" });

const WORDS = ["Wireless", "Studio", "Noise-Cancelling", "Portable", "Smart", "Gaming", "Ergonomic", "Compact", "Premium", "Classic"];
const KINDS = ["Headphones", "Speaker", "Laptop", "Keyboard", "Mouse", "Kettle", "Backpack", "Tent", "Jacket", "Lamp", "Blender", "Camera"];
const BRANDS = ["Aurora", "Nimbus", "Vertex", "Lumen", "Koda", "Solace", "Brightline", "Northpeak", "Everwood", "Pixelforge"];
const CATS = ["audio", "computers", "home-kitchen", "sports-outdoors", "fashion", "beauty", "toys-games", "books"];

function percentile(sorted: number[], p: number): number {
	return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function main(): Promise<void> {
	const { createBroker } = require("../lib/broker") as typeof import("../lib/broker");
	const broker = createBroker(["search"], { logger: false });
	await broker.start();
	const svc: any = broker.getLocalService("search");

	const t0 = performance.now();
	for (let batch = 0; batch < PRODUCTS; batch += 500) {
		await svc.transaction(async (t: any) => {
			for (let i = batch; i < Math.min(PRODUCTS, batch + 500); i++) {
				const name = `${BRANDS[i % 10]} ${WORDS[(i * 7) % 10]} ${KINDS[(i * 3) % 12]} ${i}`;
				// The same code path the catalog.product.* consumers run.
				await svc.storeProduct({ productId: `p-${i}`, sku: `SKU-${i}`, name, description: `${name} for everyday use`, brand: BRANDS[i % 10], categoryId: `c-${i % 8}`, categorySlug: CATS[i % 8], categoryName: CATS[i % 8], price: { amount: 500 + ((i * 7919) % 150_000), currency: "USD" }, status: "active", attributes: {}, createdAt: new Date(1_700_000_000_000 + i * 1000).toISOString(), updatedAt: new Date().toISOString(), weightGrams: 500, rating: null }, t);
			}
		});
	}
	const loadS = (performance.now() - t0) / 1000;

	const mix = [
		{ q: "hedphones" },
		{ q: "wirless speker" },
		{ q: "aurora head" },
		{ q: "noise cancelling headphones", brand: "Nimbus" },
		{ category: "audio", minPrice: 10_000, maxPrice: 50_000, sort: "price" },
		{ q: "laptop", sort: "-price", page: 3 },
		{ brand: "Lumen", sort: "-createdAt" },
		{},
	];
	const latencies: number[] = [];
	for (let i = 0; i < 200; i++) await broker.call("search.search", mix[i % mix.length]);
	const start = performance.now();
	for (let i = 0; i < QUERIES; i++) {
		const q0 = performance.now();
		await broker.call("search.search", mix[i % mix.length]);
		latencies.push(performance.now() - q0);
	}
	const totalS = (performance.now() - start) / 1000;
	const suggest: number[] = [];
	for (let i = 0; i < 1000; i++) {
		const q0 = performance.now();
		await broker.call("search.suggest", { q: ["hea", "aur", "wire", "lap", "nim"][i % 5] });
		suggest.push(performance.now() - q0);
	}
	await broker.stop();

	const sorted = latencies.sort((a, b) => a - b);
	const sortedSuggest = suggest.sort((a, b) => a - b);
	const r2 = (x: number) => Number(x.toFixed(2));
	const result = {
		benchmark: "search.search at the service (in-process broker call), mixed queries",
		command: `BENCH_PRODUCTS=${PRODUCTS} BENCH_QUERIES=${QUERIES} npm run bench:search`,
		date: new Date().toISOString(),
		machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version },
		products: PRODUCTS,
		indexLoadSeconds: r2(loadS),
		queries: QUERIES,
		queriesPerSecond: r2(QUERIES / totalS),
		latencyMs: { p50: r2(percentile(sorted, 50)), p95: r2(percentile(sorted, 95)), p99: r2(percentile(sorted, 99)), max: r2(sorted[sorted.length - 1]) },
		suggestLatencyMs: { p50: r2(percentile(sortedSuggest, 50)), p99: r2(percentile(sortedSuggest, 99)) },
		target: { p99Ms: 20 },
	};
	const dir = join(__dirname, "..", "..", "bench", "results");
	mkdirSync(dir, { recursive: true });
	writeFileSync(join(dir, "search.json"), `${JSON.stringify(result, null, 2)}\n`);
	console.log(JSON.stringify(result, null, 2));
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
