/**
 * The published contract: /api/openapi.json is valid OpenAPI 3.1 (checked against the official
 * schema by @seriousme/openapi-schema-validator), says what API.md says about statuses, answers
 * and access, and /api/docs renders it (Swagger UI from the npm package) in headless Chromium.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServiceBroker } from "moleculer";
import { useTestEnv } from "../../support/env";

jest.setTimeout(90_000);

const ROOT = join(__dirname, "../../..");
let broker: ServiceBroker;
let base = "";
let spec: any;

beforeAll(async () => {
	useTestEnv({ SEED_DEMO: "true" });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(undefined, { logger: false, namespace: `contract-${Math.random()}` });
	await broker.start();
	base = `http://127.0.0.1:${(broker.getLocalService("api") as any).server.address().port}`;
	spec = await (await fetch(`${base}/api/openapi.json`)).json();
});

afterAll(() => broker?.stop());

function op(method: string, path: string): any {
	const found = spec.paths[`/api/v1${path}`]?.[method];
	if (!found) throw new Error(`no ${method.toUpperCase()} ${path} in the document`);
	return found;
}

it("is valid OpenAPI 3.1 by the official schema", async () => {
	const file = join(mkdtempSync(join(tmpdir(), "mc-openapi-")), "openapi.json");
	writeFileSync(file, JSON.stringify(spec));
	const cli = join(ROOT, "node_modules/@seriousme/openapi-schema-validator/bin/validate-api-cli.js");
	const result = await new Promise<{ code: number; out: string }>(resolve => execFile(process.execPath, [cli, file], (err, stdout) => resolve({ code: err ? Number(err.code ?? 1) : 0, out: stdout })));
	expect(spec.openapi).toBe("3.1.0");
	expect({ code: result.code, result: JSON.parse(result.out) }).toEqual({ code: 0, result: { valid: true } });
});

it("declares the statuses of API.md: creates 201, deletes without a body 204, the rest 200", () => {
	const success = (method: string, path: string) => Object.keys(op(method, path).responses).filter(c => /^2/.test(c));
	expect(success("post", "/auth/register")).toEqual(["201"]);
	expect(success("post", "/customers/me/addresses")).toEqual(["201"]);
	expect(success("post", "/admin/users")).toEqual(["201"]);
	expect(success("post", "/products")).toEqual(["201"]);
	expect(success("post", "/products/{id}/reviews")).toEqual(["201"]);
	expect(success("post", "/orders")).toEqual(["201", "202"]);
	expect(success("delete", "/products/{id}")).toEqual(["204"]);
	expect(success("delete", "/customers/me/addresses/{id}")).toEqual(["204"]);
	expect(success("delete", "/cart")).toEqual(["204"]);
	expect(success("post", "/auth/logout")).toEqual(["204"]);
	expect(success("delete", "/cart/items/{productId}")).toEqual(["200"]);
	expect(success("get", "/products")).toEqual(["200"]);
	expect(success("post", "/categories")).toEqual(["201"]);
	expect(success("delete", "/categories/{id}")).toEqual(["204"]);
	expect(success("post", "/admin/warehouses")).toEqual(["201"]);
	expect(success("patch", "/admin/warehouses/{id}")).toEqual(["200"]);
});

it("has a contract entry (summary, status, answer) for every route of the gateway", () => {
	const { PUBLIC_ROUTES } = require("../../../services/edge/routes") as typeof import("../../../services/edge/routes");
	const { CONTRACT } = require("../../../lib/api-contract") as typeof import("../../../lib/api-contract");
	const missing = [...new Set(Object.values(PUBLIC_ROUTES) as string[])].filter(action => !CONTRACT[action]);
	expect(missing).toEqual([]);
});

it("gives every answer with a body a schema, every operation its error answers, and names its access", () => {
	for (const [path, ops] of Object.entries<any>(spec.paths)) {
		for (const [method, o] of Object.entries<any>(ops)) {
			const [code, answer] = Object.entries<any>(o.responses).find(([c]) => /^2/.test(c))!;
			if (code !== "204") expect({ op: `${method} ${path}`, schema: Boolean(answer.content?.["application/json"]?.schema) }).toEqual({ op: `${method} ${path}`, schema: true });
			expect(o.responses["503"]).toBeDefined();
			expect(o.summary).toMatch(/ — (public|signed in|customer|admin)( \(.+\))?$/);
		}
	}
	expect(op("post", "/admin/users").summary).toBe("Create an admin user — admin (superadmin)");
	expect(op("post", "/admin/users").security).toEqual([{ bearer: [] }]);
	expect(op("post", "/admin/users").responses["403"]).toBeDefined();
	expect(op("get", "/products").summary).toBe("List active products — public");
	expect(op("get", "/products").security).toBeUndefined();
});

it("shows parameters, bodies and examples taken from the actions' own validation", () => {
	const list = op("get", "/products");
	expect(list.parameters.map((p: any) => p.name)).toEqual(expect.arrayContaining(["page", "pageSize", "sort"]));
	const login = op("post", "/auth/login").requestBody.content["application/json"];
	expect(login.schema).toMatchObject({ type: "object", required: expect.arrayContaining(["email", "password"]), additionalProperties: false });
	expect(login.example).toEqual({ email: expect.any(String), password: expect.any(String) });
	const checkout = op("post", "/orders");
	expect(checkout.parameters).toEqual(expect.arrayContaining([expect.objectContaining({ name: "Idempotency-Key", in: "header", required: true })]));
	expect(spec.components.schemas.Order.example).toMatchObject({ status: "CONFIRMED" });
});

it("answers a 201 with the Location of what it created, without moleculer-web's missing-$location warning", async () => {
	const api: any = broker.getLocalService("api");
	const warn = jest.spyOn(api.logger, "warn");
	const res = await fetch(`${base}/api/v1/auth/register`, {
		method: "POST",
		headers: { "content-type": "application/json" },
		body: JSON.stringify({ email: `loc-${Date.now()}@example.com`, password: "a-good-password-1", firstName: "L", lastName: "Oc" }),
	});
	expect(res.status).toBe(201);
	expect(res.headers.get("location")).toBe("/api/v1/customers/me");
	expect(warn.mock.calls.filter(c => String(c[0]).includes("$location"))).toEqual([]);
	warn.mockRestore();
});

/** Chromium from Debian (`apt-get install chromium`); CI installs it (.ci/run). */
function chromium(): string | undefined {
	for (const bin of ["chromium", "chromium-browser", "google-chrome"]) {
		try {
			execFileSync("which", [bin], { stdio: "ignore" });
			return bin;
		} catch {
			// not this one
		}
	}
	return undefined;
}

it("renders /api/docs in headless Chromium, an admin operation labelled with its role", async () => {
	const bin = chromium();
	if (!bin) {
		if (process.env.CI) throw new Error("chromium is not installed; .ci/run installs it (apt-get install chromium)");
		console.warn("SKIPPED: chromium is not installed here (apt-get install -y chromium); the /api/docs rendering test did not run");
		return;
	}
	const page = await fetch(`${base}/api/docs`);
	expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
	const profile = mkdtempSync(join(tmpdir(), "mc-chromium-"));
	const dom = await new Promise<string>((resolve, reject) =>
		execFile(
			bin,
			["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage", `--user-data-dir=${profile}`, "--virtual-time-budget=20000", "--dump-dom", `${base}/api/docs`],
			{ timeout: 60_000, maxBuffer: 64 * 1024 * 1024 },
			(err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
		),
	);
	// Swagger UI rendered the document (no CDN: every asset came from the gateway) ...
	expect(dom).toContain("moleculer-commerce public API");
	// ... with the admin-user creation as an operation labelled with its role.
	const at = dom.indexOf('<div class="opblock opblock-post" id="operations-users-users\\.create">');
	expect(at).toBeGreaterThan(0);
	const block = dom.slice(at, at + 3000);
	expect(block).toContain('data-path="/api/v1/admin/users"');
	expect(block).toContain('<div class="opblock-summary-description">Create an admin user — admin (superadmin)</div>');
	// Public and customer operations say so too.
	expect(dom).toContain("List active products — public");
	expect(dom).toContain("Check out (runs the checkout saga) — customer");
});
