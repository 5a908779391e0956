/**
 * Faults across processes: a dead catalog node, and a rate limit that forwarded headers cannot dodge.
 */
import { TestCluster } from "../support/harness";

jest.setTimeout(120_000);

const REQUEST_TIMEOUT_MS = 2000;
const cluster = new TestCluster(
	[
		{ name: "gateway", services: ["api"] },
		{ name: "identity", services: ["auth", "customers", "users"] },
		{ name: "catalog", services: ["catalog"] },
	],
	{ REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), AUTH_RATE_LIMIT_MAX: "5" },
);

beforeAll(async () => {
	await cluster.start();
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/products")).status === 200, 60_000, "catalog");
});

afterAll(() => cluster.stop());

it("answers 503 within the request timeout while the catalog node is dead, and recovers when it returns", async () => {
	await cluster.kill("catalog", "SIGKILL");
	// Right after the kill the gateway still believes the node alive: calls time out, never hang.
	// Pages nobody read before: a cached answer would still be served (lib/cache.ts).
	for (let i = 0; i < 3; i++) {
		const res = await cluster.http("GET", `/api/v1/products?page=${1000 + i}`);
		expect(res.status).toBe(503);
		expect(res.body).toMatchObject({ name: expect.any(String), code: 503, type: expect.stringMatching(/^SERVICE_/) });
		expect(res.headers.get("retry-after")).toBeTruthy();
		expect(res.ms).toBeLessThan(REQUEST_TIMEOUT_MS + 1500);
	}
	await cluster.respawn("catalog");
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/products?page=2000")).status === 200, 60_000, "catalog back");
	// Recovered means every request answers again, not just one (each a page not cached before).
	for (let i = 0; i < 5; i++) expect((await cluster.http("GET", `/api/v1/products?pageSize=${i + 1}&sort=price`)).body.items).toHaveLength(i + 1);
});

it("limits login attempts per client address whatever X-Forwarded-For says", async () => {
	const statuses: number[] = [];
	for (let i = 0; i < 8; i++) {
		const res = await cluster.http("POST", "/api/v1/auth/login", { body: { email: "nobody@example.com", password: "wrong-password" }, headers: { "x-forwarded-for": `10.0.0.${i}` } });
		statuses.push(res.status);
		if (res.status === 429) {
			expect(res.body).toMatchObject({ code: 429, type: "RATE_LIMITED" });
			expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
		}
	}
	expect(statuses.slice(0, 5).every(s => s === 401)).toBe(true);
	expect(statuses.slice(5)).toEqual([429, 429, 429]);
	// Ordinary reads have their own, larger budget.
	expect((await cluster.http("GET", "/api/v1/categories")).status).toBe(200);
});
