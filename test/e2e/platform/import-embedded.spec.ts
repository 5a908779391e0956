/**
 * `npm run import` and `npm run export` without a cluster: they run the catalog, the warehouse
 * and their event consumers themselves, on the SQLite files of DATA_DIR, and leave only once
 * those consumers have the events (here the demo data gives the categories and warehouses).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_ADMIN, TEST_JWT_SECRET } from "../../support/env";

jest.setTimeout(180_000);

const dataDir = mkdtempSync(join(tmpdir(), "mc-import-embedded-"));
const env = { ...process.env, NODE_ENV: "test", DATA_DIR: dataDir, TRANSPORTER: "", DATABASE_URL: "", SEED_DEMO: "true", LOG_LEVEL: "warn", JWT_SECRET: TEST_JWT_SECRET, ADMIN_PASSWORD: TEST_ADMIN.password };

async function run(script: "import" | "export", ...args: string[]) {
	const child = spawn(process.execPath, [join(__dirname, `../../../dist/bin/${script}.js`), ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
	let stdout = "";
	let stderr = "";
	child.stdout.on("data", b => (stdout += b));
	child.stderr.on("data", b => (stderr += b));
	const [status] = (await once(child, "exit")) as [number | null];
	return { status, stdout, stderr };
}

it("imports into DATA_DIR, reports refused rows, and exports what import reads back unchanged", async () => {
	const file = join(dataDir, "products.csv");
	writeFileSync(file, "sku,name,brand,category,price,stock:wh-east\nEMB-1,Embedded Kettle,Zephyr,home-kitchen,45.99,7\nEMB-2,Nowhere Kettle,Zephyr,attic,1.00,1\n");
	const first = await run("import", file, "--json");
	expect([first.status, first.stderr]).toEqual([2, expect.stringMatching(/Embedded: catalog, warehouse, search, shipping on the SQLite files/)]);
	expect(JSON.parse(first.stdout)).toMatchObject({ rows: 2, created: 1, refused: [{ line: 3, sku: "EMB-2", reason: 'unknown category "attic"' }], stock: { set: 1 } });

	const exported = await run("export", "-");
	expect(exported.status).toBe(0);
	expect(exported.stdout).toMatch(/^sku,name,description,brand,category,price,currency,weightGrams,status,attributes,images,stock:wh-east,stock:wh-west\n/);
	expect(exported.stdout).toContain("\nEMB-1,Embedded Kettle,,Zephyr,home-kitchen,45.99,USD,500,active,,,7,\n");

	const back = join(dataDir, "back.csv");
	writeFileSync(back, exported.stdout);
	const again = await run("import", back, "--json", "--dry-run");
	expect(again.status).toBe(0);
	const report = JSON.parse(again.stdout);
	expect(report).toMatchObject({ dryRun: true, created: 0, updated: 0, refused: [], stock: { set: 0 } });
	expect(report.unchanged).toBe(report.rows);
	expect(readFileSync(file, "utf8")).toContain("EMB-1");
});

it("refuses a file it cannot read before writing anything, with exit status 65", async () => {
	const file = join(dataDir, "bad.csv");
	writeFileSync(file, "sku,title,price\nX,Y,1\n");
	const r = await run("import", file);
	expect(r.status).toBe(65);
	expect(r.stderr).toMatch(/unknown column "title"[\s\S]*required column "name" is missing/);
});
