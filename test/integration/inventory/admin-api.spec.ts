/**
 * The admin inventory endpoints through the gateway: any admin reads stock, only ops sets it,
 * bad input gets a clear 4xx in API.md's error shape and changes nothing.
 */
import type { ServiceBroker } from "moleculer";
import { TEST_ADMIN, useTestEnv } from "../../support/env";

jest.setTimeout(60_000);

let broker: ServiceBroker;
let base: string;
const tokens: Record<"superadmin" | "support" | "ops" | "customer", string> = {} as any;
const SKU = "INV-API-001";

async function http(method: string, path: string, opts: { body?: unknown; raw?: string; token?: string } = {}) {
	const res = await fetch(base + path, {
		method,
		headers: { ...(opts.body !== undefined || opts.raw ? { "content-type": "application/json" } : {}), ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
		body: opts.raw ?? (opts.body !== undefined ? JSON.stringify(opts.body) : undefined),
	});
	const text = await res.text();
	return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function login(email: string, password: string): Promise<string> {
	const r = await http("POST", "/api/v1/auth/login", { body: { email, password } });
	expect(r.status).toBe(200);
	return r.body.accessToken;
}

const movements = async () => ((await (broker.getLocalService("warehouse") as any).models.Movement.count()) as number);

beforeAll(async () => {
	useTestEnv({ AUTH_RATE_LIMIT_MAX: "1000" });
	const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
	broker = createBroker(["api", "auth", "users", "customers", "warehouse"], { logger: false, namespace: `invapi-${Math.random()}` });
	await broker.start();
	base = `http://127.0.0.1:${(broker.getLocalService("api") as any).server.address().port}`;
	await broker.call("warehouse.seedDemo");
	tokens.superadmin = await login(TEST_ADMIN.email, TEST_ADMIN.password);
	for (const role of ["support", "ops"] as const) {
		const r = await http("POST", "/api/v1/admin/users", { token: tokens.superadmin, body: { email: `${role}@test.local`, password: "a-long-password-1", name: role, roles: [role] } });
		expect(r.status).toBe(201);
		tokens[role] = await login(`${role}@test.local`, "a-long-password-1");
	}
	const c = await http("POST", "/api/v1/auth/register", { body: { email: "buyer@test.local", password: "a-long-password-1", firstName: "B", lastName: "Uyer" } });
	expect(c.status).toBe(201);
	tokens.customer = c.body.accessToken;
});

afterAll(() => broker?.stop());

describe("PUT /admin/inventory/:sku", () => {
	it("sets on-hand for role ops, creating the row for a new sku, and answers the stock", async () => {
		expect(await http("PUT", `/api/v1/admin/inventory/${SKU}`, { token: tokens.ops, body: { warehouseId: "wh-west", onHand: 12 } })).toEqual({
			status: 200,
			body: { sku: SKU, warehouses: [{ warehouseId: "wh-west", onHand: 12, reserved: 0, available: 12 }] },
		});
		expect(await http("PUT", `/api/v1/admin/inventory/${SKU}`, { token: tokens.superadmin, body: { warehouseId: "wh-east", onHand: 3 } })).toEqual({
			status: 200,
			body: { sku: SKU, warehouses: [{ warehouseId: "wh-east", onHand: 3, reserved: 0, available: 3 }, { warehouseId: "wh-west", onHand: 12, reserved: 0, available: 12 }] },
		});
	});

	it("needs role ops: support gets 403 MISSING_ROLE, a customer 403, no token 401, and nothing changes", async () => {
		const before = await movements();
		expect(await http("PUT", `/api/v1/admin/inventory/${SKU}`, { token: tokens.support, body: { warehouseId: "wh-west", onHand: 1 } })).toMatchObject({ status: 403, body: { code: 403, type: "MISSING_ROLE" } });
		expect(await http("PUT", `/api/v1/admin/inventory/${SKU}`, { token: tokens.customer, body: { warehouseId: "wh-west", onHand: 1 } })).toMatchObject({ status: 403 });
		expect(await http("PUT", `/api/v1/admin/inventory/${SKU}`, { body: { warehouseId: "wh-west", onHand: 1 } })).toMatchObject({ status: 401 });
		expect((await http("GET", `/api/v1/admin/inventory/${SKU}`, { token: tokens.ops })).body.warehouses[1]).toEqual({ warehouseId: "wh-west", onHand: 12, reserved: 0, available: 12 });
		expect(await movements()).toBe(before);
	});

	it("answers bad input with 422, an unknown warehouse with 404 and less than reserved with 409, changing nothing", async () => {
		await broker.call("warehouse.reserve", { orderId: "api-o1", lines: [{ sku: SKU, quantity: 10 }], idempotencyKey: "api-o1" });
		const before = await movements();
		const put = (body: unknown, sku = SKU) => http("PUT", `/api/v1/admin/inventory/${sku}`, { token: tokens.ops, body });
		for (const body of [{ warehouseId: "wh-west", onHand: -1 }, { warehouseId: "wh-west", onHand: 2.5 }, { warehouseId: "wh-west", onHand: "20" }, { warehouseId: "wh-west" }, { onHand: 20 }, { warehouseId: "wh-west", onHand: 20, reserved: 0 }]) {
			expect(await put(body)).toMatchObject({ status: 422, body: { name: "ValidationError", code: 422, type: "VALIDATION_ERROR", data: expect.any(Array) } });
		}
		expect(await put({ warehouseId: "wh-west", onHand: 20 }, "not%20a%20sku")).toMatchObject({ status: 422 });
		expect(await http("PUT", `/api/v1/admin/inventory/${SKU}`, { token: tokens.ops, raw: "{ onHand" })).toMatchObject({ status: 400 });
		expect(await put({ warehouseId: "wh-nowhere", onHand: 20 })).toMatchObject({ status: 404, body: { code: 404, type: "WAREHOUSE_NOT_FOUND" } });
		expect(await put({ warehouseId: "wh-west", onHand: 9 })).toMatchObject({ status: 409, body: { code: 409, type: "BELOW_RESERVED", data: { reserved: 10 } } });
		expect((await http("GET", `/api/v1/admin/inventory/${SKU}`, { token: tokens.support })).body).toEqual({
			sku: SKU,
			warehouses: [{ warehouseId: "wh-east", onHand: 3, reserved: 0, available: 3 }, { warehouseId: "wh-west", onHand: 12, reserved: 10, available: 2 }],
		});
		expect(await movements()).toBe(before);
		expect(await put({ warehouseId: "wh-west", onHand: 10 })).toMatchObject({ status: 200, body: { warehouses: [expect.anything(), { warehouseId: "wh-west", onHand: 10, reserved: 10, available: 0 }] } });
		expect(await movements()).toBe(before + 1);
	});
});

describe("GET /admin/inventory/:sku", () => {
	it("shows a demo product's stock per warehouse to any admin", async () => {
		const r = await http("GET", "/api/v1/admin/inventory/HP-1001", { token: tokens.support });
		expect(r.status).toBe(200);
		expect(r.body).toEqual({ sku: "HP-1001", warehouses: [expect.objectContaining({ warehouseId: "wh-east" }), expect.objectContaining({ warehouseId: "wh-west" })] });
		for (const w of r.body.warehouses) expect(w.available).toBe(w.onHand - w.reserved);
	});

	it("answers an unknown sku with 404, and non-admins with 401/403", async () => {
		expect(await http("GET", "/api/v1/admin/inventory/NO-SUCH-SKU", { token: tokens.ops })).toMatchObject({ status: 404, body: { code: 404, type: "SKU_NOT_FOUND" } });
		expect(await http("GET", "/api/v1/admin/inventory/HP-1001")).toMatchObject({ status: 401 });
		expect(await http("GET", "/api/v1/admin/inventory/HP-1001", { token: tokens.customer })).toMatchObject({ status: 403 });
		expect(await http("GET", "/api/v1/admin/inventory/HP-1001?extra=1", { token: tokens.ops })).toMatchObject({ status: 422 });
	});
});
