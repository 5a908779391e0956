/**
 * Gateway, identity and catalog in separate processes over real NATS and PostgreSQL.
 */
import jwt from "jsonwebtoken";
import { TEST_JWT_SECRET } from "../../support/env";
import { TestCluster } from "../support/harness";

jest.setTimeout(120_000);

const cluster = new TestCluster(
	[
		{ name: "gateway", services: ["api"] },
		{ name: "identity", services: ["auth", "customers", "users"] },
		{ name: "catalog", services: ["catalog"] },
	],
	{ AUTH_RATE_LIMIT_MAX: "10000", RATE_LIMIT_MAX: "100000" },
);

let superToken: string;

beforeAll(async () => {
	await cluster.start();
	await cluster.waitUntil(async () => (await cluster.http("GET", "/api/v1/products")).status === 200, 60_000, "catalog");
	await cluster.waitUntil(async () => (await cluster.http("POST", "/api/v1/auth/login", { body: { email: "x@example.com", password: "nope" } })).status === 401, 60_000, "identity");
	superToken = (await cluster.loginAdmin()).accessToken;
});

afterAll(() => cluster.stop());

async function createAdmin(roles: string[]) {
	const email = `${roles.join("-")}-${Math.random().toString(36).slice(2, 7)}@example.com`;
	const res = await cluster.http("POST", "/api/v1/admin/users", { token: superToken, body: { email, password: "admin-password-42", name: "Staff", roles } });
	expect(res.status).toBe(201);
	return (await cluster.login(email, "admin-password-42")).accessToken;
}

describe("sessions", () => {
	it("registers, logs in, refreshes and logs out", async () => {
		const c = await cluster.registerCustomer();
		expect(c.customer).toEqual({ id: expect.any(String), email: c.email, firstName: "Test", lastName: "Customer", phone: null, addresses: [] });
		expect(c.expiresIn).toBeLessThanOrEqual(900);

		const login = await cluster.login(c.email, c.password);
		expect(login.user).toEqual({ id: c.customer.id, typ: "customer", roles: [] });
		const claims: any = jwt.decode(login.accessToken);
		expect(claims).toMatchObject({ sub: c.customer.id, typ: "customer", roles: [], iss: expect.any(String), aud: expect.any(String) });
		expect(claims.exp - claims.iat).toBeLessThanOrEqual(900);

		const refreshed = await cluster.http("POST", "/api/v1/auth/refresh", { body: { refreshToken: login.refreshToken } });
		expect(refreshed.status).toBe(200);
		expect(refreshed.body.refreshToken).not.toBe(login.refreshToken);
		expect((await cluster.http("GET", "/api/v1/customers/me", { token: refreshed.body.accessToken })).status).toBe(200);

		expect((await cluster.http("POST", "/api/v1/auth/logout", { token: refreshed.body.accessToken })).status).toBe(204);
		const after = await cluster.http("GET", "/api/v1/customers/me", { token: refreshed.body.accessToken });
		expect(after.status).toBe(401);
		expect(after.body).toMatchObject({ code: 401, type: "SESSION_REVOKED" });
		expect((await cluster.http("POST", "/api/v1/auth/refresh", { body: { refreshToken: refreshed.body.refreshToken } })).status).toBe(401);
	});

	it("revokes the whole session when a used refresh token comes back", async () => {
		const c = await cluster.registerCustomer();
		const first = await cluster.http("POST", "/api/v1/auth/refresh", { body: { refreshToken: c.refreshToken } });
		expect(first.status).toBe(200);
		const replay = await cluster.http("POST", "/api/v1/auth/refresh", { body: { refreshToken: c.refreshToken } });
		expect(replay.status).toBe(401);
		expect(replay.body.type).toBe("REFRESH_TOKEN_REUSED");
		// The thief's replay also kills the legitimate newer tokens.
		expect((await cluster.http("GET", "/api/v1/customers/me", { token: first.body.accessToken })).status).toBe(401);
		expect((await cluster.http("POST", "/api/v1/auth/refresh", { body: { refreshToken: first.body.refreshToken } })).status).toBe(401);
	});

	it("gives the same answer for an unknown email and a wrong password", async () => {
		const c = await cluster.registerCustomer();
		const wrong = await cluster.http("POST", "/api/v1/auth/login", { body: { email: c.email, password: "not-the-password" } });
		const unknown = await cluster.http("POST", "/api/v1/auth/login", { body: { email: `nobody-${cluster.id}@example.com`, password: "not-the-password" } });
		expect(wrong.status).toBe(401);
		expect(unknown.body).toEqual(wrong.body);
		expect(wrong.body.type).toBe("INVALID_CREDENTIALS");
	});
});

describe("forged tokens", () => {
	let good: { sub: string; sid: string; token: string };
	beforeAll(async () => {
		const c = await cluster.registerCustomer();
		const claims: any = jwt.decode(c.accessToken);
		good = { sub: claims.sub, sid: claims.sid, token: c.accessToken };
	});

	const sign = (over: Record<string, unknown>, key = TEST_JWT_SECRET, opts: jwt.SignOptions = {}) =>
		jwt.sign({ typ: "customer", roles: [], sid: good.sid, ...over }, key, { algorithm: "HS256", subject: good.sub, issuer: "moleculer-commerce", audience: "moleculer-commerce-api", expiresIn: 600, ...opts });

	it.each([
		["alg none", () => `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${Buffer.from(JSON.stringify({ sub: "x", typ: "admin", roles: ["superadmin"], sid: "x", aud: "moleculer-commerce-api", iss: "moleculer-commerce", exp: 9999999999 })).toString("base64url")}.`],
		["a wrong key", () => sign({}, "another-secret-another-secret-another-secret-123")],
		["an expired token", () => sign({}, TEST_JWT_SECRET, { expiresIn: -60 })],
		["a wrong audience", () => sign({}, TEST_JWT_SECRET, { audience: "someone-else" })],
		["a wrong issuer", () => sign({}, TEST_JWT_SECRET, { issuer: "someone-else" })],
		["an unknown session", () => sign({ sid: "00000000-0000-0000-0000-000000000000" })],
		["a malformed header", () => "not-a-jwt"],
	])("refuses %s with 401", async (_what, token) => {
		const res = await cluster.http("GET", "/api/v1/customers/me", { token: token() });
		expect(res.status).toBe(401);
		expect(res.body).toMatchObject({ name: expect.any(String), code: 401, type: expect.any(String) });
	});

	it("accepts the genuine token, and refuses it once its session is revoked", async () => {
		expect((await cluster.http("GET", "/api/v1/customers/me", { token: good.token })).status).toBe(200);
		expect((await cluster.http("POST", "/api/v1/auth/logout", { token: good.token })).status).toBe(204);
		expect((await cluster.http("GET", "/api/v1/customers/me", { token: good.token })).status).toBe(401);
	});
});

describe("roles", () => {
	it("keeps customers off admin routes", async () => {
		const c = await cluster.registerCustomer();
		for (const [method, path] of [["GET", "/api/v1/admin/users"], ["POST", "/api/v1/admin/users"], ["POST", "/api/v1/products"]] as const) {
			const res = await cluster.http(method, path, { token: c.accessToken, body: method === "POST" ? {} : undefined });
			expect(res.status).toBe(403);
		}
	});

	it("lets only superadmins create admins and only the catalog role edit products", async () => {
		const catalog = await createAdmin(["catalog"]);
		const support = await createAdmin(["support"]);
		expect((await cluster.http("POST", "/api/v1/admin/users", { token: catalog, body: { email: "x-new@example.com", password: "admin-password-42", name: "X", roles: ["ops"] } })).status).toBe(403);
		expect((await cluster.http("GET", "/api/v1/admin/users", { token: support })).status).toBe(200);

		const categories = (await cluster.http("GET", "/api/v1/categories")).body.items;
		const product = { sku: `E2E-${cluster.id.toUpperCase()}`, name: "End To End Widget", brand: "Acme", categoryId: categories[0].id, price: { amount: 1299, currency: "USD" }, weightGrams: 250 };
		expect((await cluster.http("POST", "/api/v1/products", { token: support, body: product })).status).toBe(403);

		const created = await cluster.http("POST", "/api/v1/products", { token: catalog, body: product });
		expect(created.status).toBe(201);
		expect(created.body).toMatchObject({ sku: product.sku, name: product.name, price: product.price, status: "active" });
		const dup = await cluster.http("POST", "/api/v1/products", { token: catalog, body: product });
		expect(dup.status).toBe(409);
		expect(dup.body.type).toBe("SKU_TAKEN");

		expect((await cluster.http("PATCH", `/api/v1/products/${created.body.id}`, { token: support, body: { name: "Nope" } })).status).toBe(403);
		const patched = await cluster.http("PATCH", `/api/v1/products/${created.body.id}`, { token: catalog, body: { name: "Renamed Widget", price: { amount: 1499, currency: "USD" } } });
		expect(patched.status).toBe(200);
		expect(patched.body).toMatchObject({ name: "Renamed Widget", price: { amount: 1499, currency: "USD" } });

		expect((await cluster.http("DELETE", `/api/v1/products/${created.body.id}`, { token: catalog })).status).toBe(204);
		expect((await cluster.http("GET", `/api/v1/products/${created.body.id}`)).status).toBe(404);
	});
});

describe("bad input changes nothing", () => {
	it("answers 422 naming the field for wrong types, unknown fields, negative and huge numbers", async () => {
		const email = `bad-${cluster.id}@example.com`;
		const cases: unknown[] = [
			{ email, password: 12345678901, firstName: "A", lastName: "B" },
			{ email, password: "a-good-password-1", firstName: "A", lastName: "B", isAdmin: true },
			{ email, password: "short", firstName: "A", lastName: "B" },
			{ email: "not-an-email", password: "a-good-password-1", firstName: "A", lastName: "B" },
			{ email, password: "a-good-password-1", firstName: "A".repeat(5000), lastName: "B" },
		];
		for (const body of cases) {
			const res = await cluster.http("POST", "/api/v1/auth/register", { body });
			expect(res.status).toBe(422);
			expect(res.body).toMatchObject({ name: "ValidationError", code: 422, type: "VALIDATION_ERROR", data: expect.arrayContaining([expect.objectContaining({ field: expect.any(String) })]) });
		}
		// None of them created the account.
		expect((await cluster.http("POST", "/api/v1/auth/login", { body: { email, password: "a-good-password-1" } })).status).toBe(401);
	});

	it("answers 400, 413 and 415 for malformed, oversized and non-JSON bodies", async () => {
		const malformed = await cluster.http("POST", "/api/v1/auth/login", { raw: '{"email": ', headers: { "content-type": "application/json" } });
		expect(malformed.status).toBe(400);
		expect(malformed.body).toMatchObject({ code: 400, type: "INVALID_JSON" });
		const big = await cluster.http("POST", "/api/v1/auth/login", { body: { email: "a@example.com", password: "x".repeat(200_000) } });
		expect(big.status).toBe(413);
		expect(big.body.code).toBe(413);
		const text = await cluster.http("POST", "/api/v1/auth/login", { raw: "email=a", headers: { "content-type": "text/plain" } });
		expect(text.status).toBe(415);
		expect(text.body).toMatchObject({ code: 415, type: "UNSUPPORTED_MEDIA_TYPE" });
	});

	it("refuses product edits with bad fields and writes nothing", async () => {
		const catalog = await createAdmin(["catalog"]);
		const before = (await cluster.http("GET", "/api/v1/products?pageSize=1")).body.total;
		const categories = (await cluster.http("GET", "/api/v1/categories")).body.items;
		const base = { sku: "BAD-0001", name: "Bad", brand: "Acme", categoryId: categories[0].id, price: { amount: 100, currency: "USD" }, weightGrams: 10 };
		for (const body of [
			{ ...base, price: { amount: -1, currency: "USD" } },
			{ ...base, price: { amount: 1e15, currency: "USD" } },
			{ ...base, price: { amount: 10.5, currency: "USD" } },
			{ ...base, price: { amount: 100, currency: "EUR" } },
			{ ...base, status: "archived" },
			{ ...base, rating: 5 },
			{ ...base, categoryId: "no-such-category" },
			{ ...base, weightGrams: "heavy" },
		]) {
			const res = await cluster.http("POST", "/api/v1/products", { token: catalog, body });
			expect(res.status).toBe(422);
		}
		expect((await cluster.http("GET", "/api/v1/products?pageSize=1")).body.total).toBe(before);
		expect((await cluster.http("GET", "/api/v1/products?minPrice=abc")).status).toBe(422);
		expect((await cluster.http("GET", "/api/v1/products?sort=bogus")).status).toBe(422);
		expect((await cluster.http("GET", "/api/v1/products?minPrice=500&maxPrice=100")).status).toBe(422);
	});

	it("never shows another customer's address", async () => {
		const a = await cluster.registerCustomer();
		const b = await cluster.registerCustomer();
		const addr = await cluster.http("POST", "/api/v1/customers/me/addresses", { token: a.accessToken, body: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" } });
		expect(addr.status).toBe(201);
		expect(addr.body).toMatchObject({ line1: "1 Main St", country: "US", isDefault: true });
		expect((await cluster.http("DELETE", `/api/v1/customers/me/addresses/${addr.body.id}`, { token: b.accessToken })).status).toBe(404);
		expect((await cluster.http("POST", "/api/v1/customers/me/addresses", { token: a.accessToken, body: { line1: "x", city: "y", postalCode: "1", country: "usa" } })).status).toBe(422);
		expect((await cluster.http("GET", "/api/v1/customers/me", { token: a.accessToken })).body.addresses).toHaveLength(1);
	});
});

describe("catalog listing", () => {
	it("serves the demo catalog with clamped pages, filters and sort", async () => {
		const all = await cluster.http("GET", "/api/v1/products?pageSize=1000");
		expect(all.status).toBe(200);
		expect(all.body.pageSize).toBe(100);
		expect(all.body.total).toBeGreaterThanOrEqual(100);
		expect((await cluster.http("GET", "/api/v1/products?pageSize=0")).body.pageSize).toBe(1);
		const cats = (await cluster.http("GET", "/api/v1/categories")).body.items;
		expect(cats.length).toBeGreaterThanOrEqual(8);
		const audio = await cluster.http("GET", "/api/v1/products?category=audio&sort=price&pageSize=100");
		const prices = audio.body.items.map((p: any) => p.price.amount);
		expect(prices).toEqual([...prices].sort((x: number, y: number) => x - y));
		expect(audio.body.total).toBeGreaterThan(0);
		const cheap = await cluster.http("GET", "/api/v1/products?maxPrice=2000&pageSize=100");
		expect(cheap.body.items.every((p: any) => p.price.amount <= 2000)).toBe(true);
	});

	it("answers a product page with null rating and availability while those services are absent", async () => {
		const first = (await cluster.http("GET", "/api/v1/products?pageSize=1")).body.items[0];
		const res = await cluster.http("GET", `/api/v1/products/${first.id}`);
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ id: first.id, sku: first.sku, rating: null, availability: null });
		expect(res.ms).toBeLessThan(1500);
	});
});

describe("gateway basics", () => {
	it("echoes X-Request-Id and serves health, OpenAPI and docs", async () => {
		const res = await cluster.http("GET", "/health/live", { headers: { "x-request-id": "req-e2e-1" } });
		expect(res.status).toBe(200);
		expect(res.body).toEqual({ status: "ok" });
		expect(res.headers.get("x-request-id")).toBe("req-e2e-1");
		expect((await cluster.http("GET", "/health/ready")).status).toBe(200);
		const spec = await cluster.http("GET", "/api/openapi.json");
		expect(spec.body.openapi).toMatch(/^3\./);
		expect(Object.keys(spec.body.paths)).toContain("/api/v1/products/{id}");
		const docs = await cluster.http("GET", "/api/docs");
		expect(docs.status).toBe(200);
		expect(String(docs.body)).toContain("/api/v1/auth/login");
	});
});
