/**
 * `npm run seed` against a running cluster whose services started empty.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { TestCluster } from "../support/harness";

jest.setTimeout(120_000);

const cluster = new TestCluster(
	[
		{ name: "gateway", services: ["api"] },
		{ name: "catalog", services: ["catalog"] },
		{ name: "inventory", services: ["warehouse"] },
	],
	{ SEED_DEMO: "false" },
);

beforeAll(async () => {
	await cluster.start();
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/products")).status === 200, 60_000, "catalog");
});

afterAll(() => cluster.stop());

/**
 * Runs `npm run seed` without blocking this process: a blocked event loop keeps the HTTP client
 * from retiring kept-alive connections the gateway has meanwhile closed ("other side closed").
 */
function seed(): Promise<{ status: number; stdout: string }> {
	return new Promise(resolve =>
		execFile(process.execPath, [join(__dirname, "../../../dist/bin/seed.js")], { env: { ...process.env, ...cluster.nodeEnv(), SERVICES: "" }, encoding: "utf8", timeout: 90_000 }, (err, stdout) =>
			resolve({ status: err ? Number(err.code ?? 1) : 0, stdout }),
		),
	);
}

it("loads the demo catalog and stock once, and changes nothing the second time", async () => {
	expect((await cluster.http("GET", "/api/v1/products")).body.total).toBe(0);
	const first = await seed();
	expect(first.status).toBe(0);
	expect(first.stdout).toMatch(/catalog: \{"categories":12,"products":130\}/);
	expect(first.stdout).toMatch(/warehouse: \{"stockRows":260\}/);
	expect((await cluster.http("GET", "/api/v1/products?pageSize=1")).body.total).toBe(130);
	const second = await seed();
	expect(second.status).toBe(0);
	expect(second.stdout).toMatch(/catalog: \{"categories":0,"products":0\}/);
	expect((await cluster.http("GET", "/api/v1/products?pageSize=1")).body.total).toBe(130);
});
