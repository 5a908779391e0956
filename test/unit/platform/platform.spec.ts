import jwt from "jsonwebtoken";
import { ConfigError, loadConfig } from "../../../config";
import { checkAccess } from "../../../lib/access";
import { clampPaging, checkPriceRange, sortOrder, withDescendants } from "../../../lib/catalog/query";
import { DEMO_CATEGORIES, DEMO_PRODUCTS } from "../../../lib/catalog/demo-data";
import { toErrorBody } from "../../../lib/http-errors";
import { FixedWindowLimiter } from "../../../lib/rate-limit";
import { useTestEnv } from "../../support/env";

describe("configuration", () => {
	const base = { DATA_DIR: "/tmp/mc-config-test" };

	it("refuses to start in production without secrets, naming them", () => {
		expect(() => loadConfig({ ...base, NODE_ENV: "production" })).toThrow(ConfigError);
		try {
			loadConfig({ ...base, NODE_ENV: "production", ADMIN_PASSWORD: "a-long-password" });
		} catch (err) {
			expect((err as ConfigError).problems).toEqual(["JWT_SECRET: required when NODE_ENV=production"]);
		}
	});

	it("names the variable of a bad value", () => {
		expect(() => loadConfig({ ...base, PORT: "eighty" })).toThrow(/PORT/);
		expect(() => loadConfig({ ...base, TRANSPORTER: "redis://x" })).toThrow(/TRANSPORTER: must be a nats/);
		expect(() => loadConfig({ ...base, JWT_SECRET: "short" })).toThrow(/JWT_SECRET/);
	});

	it("keeps a generated secret for the embedded default and reads per-service database overrides", () => {
		const a = loadConfig({ ...base });
		const b = loadConfig({ ...base });
		expect(a.JWT_SECRET).toHaveLength(64);
		expect(b.JWT_SECRET).toBe(a.JWT_SECRET);
		expect(loadConfig({ ...base, ORDERS_DATABASE_URL: "postgres://h/o" }).serviceDatabaseUrls).toEqual({ orders: "postgres://h/o" });
	});
});

describe("access rules", () => {
	const customer = { id: "c", typ: "customer" as const, roles: [] };
	const ops = { id: "a", typ: "admin" as const, roles: ["ops"] };
	const root = { id: "r", typ: "admin" as const, roles: ["superadmin"] };

	it("lets public through, wants a user otherwise", () => {
		expect(() => checkAccess(undefined, "public")).not.toThrow();
		expect(() => checkAccess(undefined, "any")).toThrow(expect.objectContaining({ code: 401 }));
	});

	it("separates customers from admins and checks roles, superadmin having them all", () => {
		expect(() => checkAccess(ops, "customer")).toThrow(expect.objectContaining({ code: 403 }));
		expect(() => checkAccess(customer, "admin")).toThrow(expect.objectContaining({ code: 403 }));
		expect(() => checkAccess(ops, "admin", ["catalog"])).toThrow(expect.objectContaining({ code: 403, type: "MISSING_ROLE" }));
		expect(() => checkAccess(ops, "admin", ["catalog", "ops"])).not.toThrow();
		expect(() => checkAccess(root, "admin", ["catalog"])).not.toThrow();
	});
});

describe("catalog query rules", () => {
	it("clamps page sizes to 1..100 and pages to at least 1", () => {
		expect(clampPaging(0, 1000)).toEqual({ page: 1, pageSize: 100, offset: 0 });
		expect(clampPaging(-3, 0)).toEqual({ page: 1, pageSize: 1, offset: 0 });
		expect(clampPaging(3, 20)).toEqual({ page: 3, pageSize: 20, offset: 40 });
	});

	it("sorts with a stable tie-breaker and refuses inverted price ranges", () => {
		expect(sortOrder("-price")).toEqual([["price_amount", "DESC"], ["id", "ASC"]]);
		expect(() => checkPriceRange(500, 100)).toThrow(expect.objectContaining({ code: 422 }));
		expect(() => checkPriceRange(100, 500)).not.toThrow();
	});

	it("includes sub-categories", () => {
		const cats = [{ id: "a", parentId: null }, { id: "b", parentId: "a" }, { id: "c", parentId: "b" }, { id: "d", parentId: null }];
		expect(withDescendants("a", cats)).toEqual(["a", "b", "c"]);
	});
});

describe("demo catalog", () => {
	it("is deterministic and large enough", () => {
		expect(DEMO_PRODUCTS.length).toBeGreaterThanOrEqual(100);
		expect(DEMO_CATEGORIES.length).toBeGreaterThanOrEqual(8);
		expect(new Set(DEMO_PRODUCTS.map(p => p.brand)).size).toBeGreaterThanOrEqual(5);
		expect(new Set(DEMO_PRODUCTS.map(p => p.sku)).size).toBe(DEMO_PRODUCTS.length);
		expect(DEMO_PRODUCTS.every(p => Number.isInteger(p.price.amount) && p.price.amount > 0)).toBe(true);
		// Stable across runs: the first product is always the same.
		expect(DEMO_PRODUCTS[0]).toMatchObject({ sku: "HP-1001", id: "81fcadf7-5f28-5ab6-ac68-875def94134b" });
	});
});

describe("rate limiter", () => {
	it("allows the limit per window per key, then refuses until the window resets", () => {
		let now = 0;
		const l = new FixedWindowLimiter(2, 1000, () => now);
		expect([l.hit("a").allowed, l.hit("a").allowed, l.hit("a").allowed, l.hit("b").allowed]).toEqual([true, true, false, true]);
		expect(l.hit("a").resetInS).toBe(1);
		now = 1000;
		expect(l.hit("a").allowed).toBe(true);
	});
});

describe("error shape", () => {
	it("maps unavailable dependencies to 503 and hides internal errors", () => {
		expect(toErrorBody({ code: 404, type: "SERVICE_NOT_AVAILABLE" })).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE" });
		expect(toErrorBody({ code: 504, type: "REQUEST_TIMEOUT" })).toMatchObject({ code: 503, type: "SERVICE_TIMEOUT" });
		// PostgreSQL out of connections, as the gateway receives it over the transporter (adversary finding).
		expect(toErrorBody({ name: "SequelizeConnectionError", message: "sorry, too many clients already" })).toMatchObject({ code: 503, type: "DATABASE_UNAVAILABLE" });
		expect(toErrorBody({ name: "SequelizeConnectionAcquireTimeoutError", message: "Operation timeout" })).toMatchObject({ code: 503 });
		// A connection lost under a statement while PostgreSQL stops or restarts: a dependency unavailable too.
		expect(toErrorBody({ name: "SequelizeDatabaseError", message: "terminating connection due to administrator command" })).toMatchObject({ code: 503, type: "DATABASE_UNAVAILABLE" });
		expect(toErrorBody({ name: "SequelizeDatabaseError", message: "the database system is starting up" })).toMatchObject({ code: 503 });
		// Any other database error stays a 500 that says nothing of its detail.
		expect(toErrorBody({ name: "SequelizeDatabaseError", message: 'relation "x" does not exist' })).toMatchObject({ code: 500, type: "INTERNAL_ERROR" });
		expect(toErrorBody(new Error("secret detail"))).toEqual({ name: "InternalServerError", message: expect.not.stringContaining("secret"), code: 500, type: "INTERNAL_ERROR" });
	});

	it("keeps validation problems as field/message pairs", () => {
		const body = toErrorBody({ name: "ValidationError", code: 422, type: "VALIDATION_ERROR", message: "Parameters validation error!", data: [{ type: "objectStrict", actual: "isAdmin" }, { field: "email", message: "bad", actual: "x" }] });
		expect(body.data).toEqual([{ field: "isAdmin", message: "Unknown field(s): isAdmin" }, { field: "email", message: "bad" }]);
	});
});

describe("access tokens", () => {
	useTestEnv();
	const { signAccessToken, verifyAccessToken } = require("../../../lib/tokens") as typeof import("../../../lib/tokens");

	it("round-trips the claims of API.md", () => {
		const { token } = signAccessToken({ sub: "u1", typ: "admin", roles: ["ops"], sid: "s1" });
		expect(verifyAccessToken(token)).toMatchObject({ sub: "u1", typ: "admin", roles: ["ops"], sid: "s1", iss: "moleculer-commerce", aud: "moleculer-commerce-api" });
	});

	it("refuses HS512 and unsigned tokens even with the right key", () => {
		const secret = process.env.JWT_SECRET!;
		const hs512 = jwt.sign({ typ: "admin", roles: [], sid: "s" }, secret, { algorithm: "HS512", subject: "u", issuer: "moleculer-commerce", audience: "moleculer-commerce-api" });
		expect(() => verifyAccessToken(hs512)).toThrow(expect.objectContaining({ code: 401 }));
		const none = jwt.sign({ typ: "admin", roles: [], sid: "s" }, "", { algorithm: "none", subject: "u" } as any);
		expect(() => verifyAccessToken(none)).toThrow(expect.objectContaining({ code: 401 }));
	});
});
