/**
 * Warehouses through the real gateway (api, identity, warehouse and shipping in one broker), on
 * SQLite and on PostgreSQL, in a shop without demo data: ops create, rename, re-address and
 * deactivate warehouses; an inactive warehouse takes no new reservations and counts for nothing
 * in availability while what it already reserved still commits; shipping quotes from the
 * nearest active warehouse's country; bad input on every endpoint gets its documented 4xx and
 * writes nothing.
 */
import type { ServiceBroker } from "moleculer";
import { defineOutboxModel } from "../../../lib/bus/outbox-relay";
import { useTestEnv } from "../../support/env";
import { type Http, callers, gatewayClient } from "../catalog/support";
import { PG_URL, dropDatabases, pgPrefix, waitFor } from "../events/helpers";

jest.setTimeout(120_000);

const address = (country = "US", city = "Newark") => ({ line1: "1 Dock Road", city, postalCode: "07114", country });

describe.each([
	["SQLite", {}],
	["PostgreSQL", { DATABASE_URL: PG_URL, DB_NAME_PREFIX: pgPrefix("whs") }],
])("warehouses on %s", (_db, env: Record<string, string>) => {
	let broker: ServiceBroker;
	let http: Http;
	let tokens: Awaited<ReturnType<typeof callers>>;
	let n = 0;
	const system = { meta: { user: { id: "system", typ: "system", roles: [] } } };

	const create = (body: unknown, token = tokens.support) => http("POST", "/admin/warehouses", { token, body });
	const patch = (id: string, body: unknown, token = tokens.support) => http("PATCH", `/admin/warehouses/${id}`, { token, body });
	const list = async () => (await http("GET", "/admin/warehouses", { token: tokens.support })).body.items as any[];
	const answer = (r: { status: number; body: unknown }) => ({ status: r.status, body: r.body });
	const events = async () => {
		const svc = broker.getLocalService("warehouse") as any;
		const rows: any[] = await defineOutboxModel(svc.sequelize).findAll({ order: [["occurred_at", "ASC"]], raw: true });
		return rows.map(r => ({ name: r.name as string, payload: typeof r.payload === "string" ? JSON.parse(r.payload) : r.payload }));
	};
	const setStock = async (sku: string, warehouseId: string, onHand: number) => {
		const r = await http("PUT", `/admin/inventory/${sku}`, { token: tokens.support, body: { warehouseId, onHand } });
		expect(r.status).toBe(200);
	};
	const reserve = (lines: { sku: string; quantity: number }[]) => {
		const orderId = `order-${++n}`;
		return broker.call("warehouse.reserve", { orderId, lines, idempotencyKey: `${orderId}:reserve` }).then(
			(r: any) => ({ orderId, ...r }),
			(err: any) => ({ orderId, error: err.type }),
		);
	};
	const quote = (country: string) => broker.call("shipping.quote", { address: { country }, lines: [{ productId: "p", quantity: 1, weightGrams: 500 }], subtotal: { amount: 100, currency: "USD" } }) as Promise<{ items: any[] }>;

	beforeAll(async () => {
		useTestEnv({ ...env, SEED_DEMO: "false", AUTH_RATE_LIMIT_MAX: "1000", RATE_LIMIT_MAX: "100000" });
		const { createBroker } = require("../../../lib/broker") as typeof import("../../../lib/broker");
		broker = createBroker(["api", "auth", "users", "customers", "warehouse", "shipping"], { logger: false, namespace: `whs-${Math.random().toString(36).slice(2)}` });
		await broker.start();
		http = gatewayClient(broker);
		tokens = await callers(http);
	});

	afterAll(async () => {
		await broker?.stop();
		if (env.DATABASE_URL) await dropDatabases(env.DB_NAME_PREFIX);
	});

	it("has no warehouse in a shop without demo data; any admin may list them, nobody else", async () => {
		expect(answer(await http("GET", "/admin/warehouses", { token: tokens.catalog }))).toEqual({ status: 200, body: { items: [] } });
		expect((await http("GET", "/admin/warehouses", { token: tokens.customer })).status).toBe(403);
		expect((await http("GET", "/admin/warehouses")).status).toBe(401);
	});

	it("creates warehouses for ops, with a chosen id or a generated one, each one event; the same id twice is 409 WAREHOUSE_EXISTS", async () => {
		const east = await create({ id: "wh-east", name: "East", address: address() });
		expect(answer(east)).toEqual({ status: 201, body: { id: "wh-east", name: "East", address: { ...address(), line2: null }, active: true } });
		const anon = await create({ name: "Overflow", address: { ...address("US", "Reno"), line2: "Unit 4" } });
		expect(anon.status).toBe(201);
		expect(anon.body.id).toMatch(/^[0-9a-f-]{36}$/);
		const [a, b] = await Promise.all([create({ id: "wh-twice", name: "A", address: address() }), create({ id: "wh-twice", name: "B", address: address() })]);
		expect([a.status, b.status].sort()).toEqual([201, 409]);
		expect([a, b].find(r => r.status === 409)!.body).toMatchObject({ code: 409, type: "WAREHOUSE_EXISTS" });
		expect((await list()).map(w => w.id)).toEqual([anon.body.id, "wh-east", "wh-twice"].sort());
		expect((await events()).filter(e => e.name === "warehouse.warehouse.created").map(e => e.payload)).toEqual(
			expect.arrayContaining([{ warehouseId: "wh-east", name: "East", country: "US", active: true, updatedAt: expect.any(String), eventId: expect.any(String), occurredAt: expect.any(String) }]),
		);
	});

	it("renames and re-addresses a warehouse; a PATCH that changes nothing records nothing; an unknown id is 404", async () => {
		const updated = await patch("wh-east", { name: "East (Newark)", address: { ...address("US", "Elizabeth"), postalCode: "07201" } });
		expect(answer(updated)).toEqual({ status: 200, body: { id: "wh-east", name: "East (Newark)", address: { line1: "1 Dock Road", line2: null, city: "Elizabeth", postalCode: "07201", country: "US" }, active: true } });
		const before = (await events()).length;
		expect(answer(await patch("wh-east", { name: "East (Newark)" }))).toEqual(answer(updated));
		expect(answer(await patch("wh-east", {}))).toEqual(answer(updated));
		expect(await events()).toHaveLength(before);
		expect(await patch("no-such-warehouse", { name: "X" })).toMatchObject({ status: 404, body: { code: 404, type: "WAREHOUSE_NOT_FOUND" } });
	});

	it("takes no new reservation from an inactive warehouse and counts none of its stock, while a reservation it already holds still commits", async () => {
		await create({ id: "wh-a", name: "A", address: address() });
		await create({ id: "wh-b", name: "B", address: address("US", "Reno") });
		const sku = `WH-SKU-${Date.now().toString(36).toUpperCase()}`;
		await setStock(sku, "wh-a", 5);
		await setStock(sku, "wh-b", 3);
		const held: any = await reserve([{ sku, quantity: 2 }]);
		expect(held.allocations).toEqual([{ warehouseId: "wh-a", sku, quantity: 2 }]);

		const off = await patch("wh-a", { active: false });
		expect(off.body.active).toBe(false);
		// Deactivating restates what the SKU can still reserve: wh-b's 3 only.
		const restated = (await events()).filter(e => e.name === "warehouse.stock.changed" && e.payload.sku === sku).pop()!;
		expect(restated.payload).toEqual(expect.objectContaining({ sku, warehouseId: "wh-a", onHand: 5, reserved: 2, totalAvailable: 3 }));
		expect(await broker.call("warehouse.availability", { sku })).toEqual({ inStock: true, quantity: 3 });

		expect(await reserve([{ sku, quantity: 4 }])).toMatchObject({ error: "OUT_OF_STOCK" });
		const fromB: any = await reserve([{ sku, quantity: 3 }]);
		expect(fromB.allocations).toEqual([{ warehouseId: "wh-b", sku, quantity: 3 }]);
		expect(await broker.call("warehouse.availability", { sku })).toEqual({ inStock: false, quantity: 0 });

		// The reservation taken before stays and ships from wh-a.
		expect(await broker.call("warehouse.commit", { orderId: held.orderId, idempotencyKey: `${held.orderId}:commit` })).toEqual({ committed: true });
		const stock = (await http("GET", `/admin/inventory/${sku}`, { token: tokens.support })).body.warehouses;
		expect(stock).toEqual([
			{ warehouseId: "wh-a", onHand: 3, reserved: 0, available: 3 },
			{ warehouseId: "wh-b", onHand: 3, reserved: 3, available: 0 },
		]);

		// Back on: its stock counts and reserves again.
		await patch("wh-a", { active: true });
		expect(await broker.call("warehouse.availability", { sku })).toEqual({ inStock: true, quantity: 3 });
		expect(((await reserve([{ sku, quantity: 1 }])) as any).allocations).toEqual([{ warehouseId: "wh-a", sku, quantity: 1 }]);
	});

	it("quotes shipping from the nearest active warehouse's country, following deactivation", async () => {
		// US warehouses only so far: Europe is across the Atlantic.
		await waitFor(async () => (await quote("FR")).items[0].price.amount === 1999);
		await create({ id: "wh-berlin", name: "Berlin", address: { line1: "Lagerstraße 1", city: "Berlin", postalCode: "10115", country: "DE" } });
		await waitFor(async () => (await quote("FR")).items[0].price.amount === 1499);
		expect((await quote("US")).items[0].price.amount).toBe(499);
		await patch("wh-berlin", { active: false });
		await waitFor(async () => (await quote("FR")).items[0].price.amount === 1999);
		await patch("wh-berlin", { active: true });
		await waitFor(async () => (await quote("DE")).items[0].price.amount === 499);
	});

	it("sets stock in bulk: an answer per item, never below what is reserved, unknown warehouses refused, a second run unchanged", async () => {
		const sku = `BULK-${Date.now().toString(36).toUpperCase()}`;
		await setStock(sku, "wh-b", 4);
		const held: any = await reserve([{ sku, quantity: 4 }]);
		expect(held.allocations).toEqual([{ warehouseId: "wh-b", sku, quantity: 4 }]);
		const items = [
			{ line: 2, sku, warehouseId: "wh-a", onHand: 10 },
			{ line: 2, sku, warehouseId: "wh-b", onHand: 2 },
			{ line: 3, sku: `${sku}-2`, warehouseId: "wh-nowhere", onHand: 1 },
			{ line: 4, sku: `${sku}-3`, warehouseId: "wh-b", onHand: 7 },
		];
		const dry: any = await broker.call("warehouse.setStockMany", { items, dryRun: true }, system);
		const expected = [
			{ line: 2, sku, warehouseId: "wh-a", result: "set" },
			{ line: 2, sku, warehouseId: "wh-b", result: "refused", reason: "on hand 2 at wh-b would be below the 4 reserved" },
			{ line: 3, sku: `${sku}-2`, warehouseId: "wh-nowhere", result: "refused", reason: 'unknown warehouse "wh-nowhere"' },
			{ line: 4, sku: `${sku}-3`, warehouseId: "wh-b", result: "set" },
		];
		expect(dry.results).toEqual(expected);
		expect((await http("GET", `/admin/inventory/${sku}`, { token: tokens.support })).body.warehouses).toEqual([{ warehouseId: "wh-b", onHand: 4, reserved: 4, available: 0 }]);
		const before = (await events()).length;
		expect(((await broker.call("warehouse.setStockMany", { items }, system)) as any).results).toEqual(expected);
		expect((await http("GET", `/admin/inventory/${sku}`, { token: tokens.support })).body.warehouses).toEqual([
			{ warehouseId: "wh-a", onHand: 10, reserved: 0, available: 10 },
			{ warehouseId: "wh-b", onHand: 4, reserved: 4, available: 0 },
		]);
		// One transaction writes both events with the same occurred_at (to the ms), so their row order
		// is not defined; events of different SKUs carry no order between them (docs/EVENTS.md: handlers converge whatever the order).
		const changed = (await events()).slice(before);
		const bySku = (a: unknown[], b: unknown[]) => String(a[1]).localeCompare(String(b[1]));
		expect(changed.map(e => [e.name, e.payload.sku, e.payload.warehouseId, e.payload.totalAvailable]).sort(bySku)).toEqual([
			["warehouse.stock.changed", sku, "wh-a", 10],
			["warehouse.stock.changed", `${sku}-3`, "wh-b", 7],
		]);
		const again: any = await broker.call("warehouse.setStockMany", { items: [items[0], items[3]] }, system);
		expect(again.results.map((r: any) => r.result)).toEqual(["unchanged", "unchanged"]);
		expect(await events()).toHaveLength(before + 2);
	});

	it("refuses bad warehouse input with 422 (401/403 for callers without the ops role, 400/415 for bodies that are not JSON) and writes nothing", async () => {
		const before = { rows: await list(), events: (await events()).length };
		const badCreates: [string, unknown][] = [
			["no name", { address: address() }],
			["no address", { name: "X" }],
			["blank name", { name: "  ", address: address() }],
			["name with a NUL", { name: "Lee\u0000", address: address() }],
			["long name", { name: "n".repeat(101), address: address() }],
			["id with a slash", { id: "wh/1", name: "X", address: address() }],
			["id with a space", { id: "wh 1", name: "X", address: address() }],
			["long id", { id: "w".repeat(37), name: "X", address: address() }],
			["empty id", { id: "", name: "X", address: address() }],
			["lower-case country", { name: "X", address: address("us") }],
			["three-letter country", { name: "X", address: address("USA") }],
			["address without a city", { name: "X", address: { line1: "1 Road", postalCode: "1", country: "US" } }],
			["line1 with a NUL", { name: "X", address: { ...address(), line1: "1\u0000 Road" } }],
			["unknown field in the address", { name: "X", address: { ...address(), state: "NJ" } }],
			["address as a string", { name: "X", address: "1 Dock Road, Newark" }],
			["active on create", { name: "X", address: address(), active: false }],
			["an array body", [{ name: "X", address: address() }]],
		];
		for (const [what, body] of badCreates) {
			const r = await create(body);
			expect([what, r.status, r.body.code, r.body.type]).toEqual([what, 422, 422, "VALIDATION_ERROR"]);
			expect(r.body).not.toHaveProperty("stack");
		}
		const badPatches: [string, unknown][] = [
			["active as a string", { active: "no" }],
			["a partial address", { address: { city: "Reno" } }],
			["name with a NUL", { name: "\u0000" }],
			["unknown field", { createdAt: "2020-01-01T00:00:00Z" }],
		];
		for (const [what, body] of badPatches) {
			const r = await patch("wh-east", body);
			expect([what, r.status, r.body.type]).toEqual([what, 422, "VALIDATION_ERROR"]);
		}
		for (const [token, status] of [[undefined, 401], [tokens.customer, 403], [tokens.catalog, 403]] as const) {
			expect((await http("POST", "/admin/warehouses", { token, body: { name: "X", address: address() } })).status).toBe(status);
			expect((await http("PATCH", "/admin/warehouses/wh-east", { token, body: { active: false } })).status).toBe(status);
		}
		expect((await http("POST", "/admin/warehouses", { token: tokens.support, raw: '{"name": ' })).status).toBe(400);
		expect((await http("PATCH", "/admin/warehouses/wh-east", { token: tokens.support, raw: "active=false", contentType: "text/plain" })).status).toBe(415);
		expect(await list()).toEqual(before.rows);
		expect(await events()).toHaveLength(before.events);
	});
});
