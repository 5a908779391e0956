/**
 * `npm run seed` against a running cluster whose services started empty.
 */
import { spawnSync } from "node:child_process";
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

function seed() {
	return spawnSync(process.execPath, [join(__dirname, "../../../dist/bin/seed.js")], {
		env: { ...process.env, ...cluster.nodeEnv(), SERVICES: "" },
		encoding: "utf8",
		timeout: 90_000,
	});
}

it("loads the demo catalog and stock once, and changes nothing the second time", async () => {
	expect((await cluster.http("GET", "/api/v1/products")).body.total).toBe(0);
	const first = seed();
	expect(first.status).toBe(0);
	expect(first.stdout).toMatch(/catalog: \{"categories":12,"products":130\}/);
	expect(first.stdout).toMatch(/warehouse: \{"stockRows":260\}/);
	expect((await cluster.http("GET", "/api/v1/products?pageSize=1")).body.total).toBe(130);
	const second = seed();
	expect(second.status).toBe(0);
	expect(second.stdout).toMatch(/catalog: \{"categories":0,"products":0\}/);
	expect((await cluster.http("GET", "/api/v1/products?pageSize=1")).body.total).toBe(130);
});
