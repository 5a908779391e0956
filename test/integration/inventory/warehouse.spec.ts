/**
 * The warehouse against its real database, SQLite and PostgreSQL: racing checkouts never oversell
 * or go negative, reservations take all lines or none, every command is idempotent, expired
 * reservations come back, on-hand never drops below what is reserved, and the ledger of stock
 * movements accounts for every unit.
 */
import { ServiceBroker } from "moleculer";
import { QueryTypes, Sequelize } from "sequelize";
import { useTestEnv } from "../../support/env";

const PG = "postgres://postgres@127.0.0.1:5432/postgres";
let n = 0;
const fresh = (prefix: string) => `${prefix}-${++n}-${Math.random().toString(36).slice(2, 8)}`;

describe.each([
	["SQLite", {}],
	["PostgreSQL", { DATABASE_URL: PG, DB_NAME_PREFIX: `t_${Math.random().toString(36).slice(2, 8)}_` }],
])("warehouse on %s", (_db, env: Record<string, string>) => {
	jest.setTimeout(120_000);
	let broker: ServiceBroker;
	let svc: any;
	let db: Sequelize;
	let seeded: unknown;
	const ops = { meta: { user: { id: "o", typ: "admin", roles: ["ops"] } } };

	const query = (sql: string, replacements: Record<string, unknown> = {}) => db.query(sql, { type: QueryTypes.SELECT, replacements }) as Promise<any[]>;
	const stock = async (sku: string) => ((await broker.call("warehouse.stock", { sku }, ops)) as any).warehouses;
	const setStock = async (sku: string, east: number, west: number) => {
		await broker.call("warehouse.setOnHand", { sku, warehouseId: "wh-east", onHand: east }, ops);
		await broker.call("warehouse.setOnHand", { sku, warehouseId: "wh-west", onHand: west }, ops);
	};
	const reserve = (orderId: string, lines: { sku: string; quantity: number }[], idempotencyKey = `${orderId}:reserve`) =>
		broker.call("warehouse.reserve", { orderId, lines, idempotencyKey }) as Promise<any>;
	const row = (warehouseId: string, onHand: number, reserved: number) => ({ warehouseId, onHand, reserved, available: onHand - reserved });
	const newSku = () => `T-${++n}-${Math.random().toString(36).slice(2, 8).toUpperCase()}`;

	beforeAll(async () => {
		useTestEnv(env);
		const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");
		const { loadServiceSchema } = require("../../../services") as typeof import("../../../services");
		broker = new ServiceBroker(brokerOptions({ logger: false, namespace: `wh-${Math.random()}` }));
		// The sweeper runs every 50 ms here instead of every 30 s; reservations still last 15 minutes unless a test says otherwise.
		broker.createService({ name: "warehouse", mixins: [loadServiceSchema("warehouse")], settings: { sweepIntervalMs: 50 } });
		await broker.start();
		svc = broker.getLocalService("warehouse");
		db = svc.sequelize;
		seeded = await broker.call("warehouse.seedDemo");
	});

	afterAll(async () => {
		await broker?.stop();
		if (env.DB_NAME_PREFIX) {
			const admin = new Sequelize(PG, { logging: false });
			const rows = await admin.query(`SELECT datname FROM pg_database WHERE datname LIKE '${env.DB_NAME_PREFIX}%'`, { type: QueryTypes.SELECT });
			for (const r of rows as any[]) await admin.query(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`);
			await admin.close();
		}
	});

	it("seeds two warehouses and stock for every demo product once", async () => {
		const { DEMO_PRODUCTS } = require("../../../lib/catalog/demo-data") as typeof import("../../../lib/catalog/demo-data");
		expect(seeded).toEqual({ stockRows: DEMO_PRODUCTS.length * 2 });
		expect(await broker.call("warehouse.seedDemo")).toEqual({ stockRows: 0 });
		expect(await query("SELECT id FROM warehouses ORDER BY id")).toEqual([{ id: "wh-east" }, { id: "wh-west" }]);
		expect(await stock(DEMO_PRODUCTS[0].sku)).toEqual([row("wh-east", 20, 0), row("wh-west", 10, 0)]);
		expect(await broker.call("warehouse.availability", { sku: DEMO_PRODUCTS[16].sku })).toEqual({ inStock: false, quantity: 0 });
	});

	it("reserves exactly the 50 units there are when 200 orders race for them, across two warehouses", async () => {
		const sku = newSku();
		await setStock(sku, 30, 20);
		const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => reserve(fresh(`race${i}`), [{ sku, quantity: 1 }])));
		const ok = results.filter(r => r.status === "fulfilled") as PromiseFulfilledResult<any>[];
		const refused = results.filter(r => r.status === "rejected") as PromiseRejectedResult[];
		expect(ok).toHaveLength(50);
		expect(refused.map(r => ({ code: r.reason.code, type: r.reason.type, data: r.reason.data }))).toEqual(Array(150).fill({ code: 409, type: "OUT_OF_STOCK", data: [{ sku, requested: 1, available: 0 }] }));
		expect(await stock(sku)).toEqual([row("wh-east", 30, 30), row("wh-west", 20, 20)]);
		const byWarehouse = ok.flatMap(r => r.value.allocations).reduce((m: Record<string, number>, a: any) => ({ ...m, [a.warehouseId]: (m[a.warehouseId] ?? 0) + a.quantity }), {});
		expect(byWarehouse).toEqual({ "wh-east": 30, "wh-west": 20 });
	});

	it("never reserves more than on hand when orders of several sizes and skus race, and refuses only what no longer fits", async () => {
		const a = newSku();
		const b = newSku();
		await setStock(a, 7, 5);
		await setStock(b, 3, 3);
		const orders = Array.from({ length: 60 }, (_, i) => (i % 3 ? [{ sku: a, quantity: 1 + (i % 4) }] : [{ sku: b, quantity: 2 }, { sku: a, quantity: 1 }]));
		const results = await Promise.allSettled(orders.map(lines => reserve(fresh("mix"), lines)));
		const ok = results.filter(r => r.status === "fulfilled") as PromiseFulfilledResult<any>[];
		const available: Record<string, number> = {};
		for (const sku of [a, b]) {
			const held = ok.flatMap(r => r.value.allocations).filter((x: any) => x.sku === sku).reduce((s: number, x: any) => s + x.quantity, 0);
			const rows = await stock(sku);
			expect(rows.reduce((s: number, r: any) => s + r.reserved, 0)).toBe(held);
			for (const r of rows) expect(r.onHand >= r.reserved && r.reserved >= 0).toBe(true);
			available[sku] = rows.reduce((s: number, r: any) => s + r.available, 0);
		}
		// Stock only shrank during the race: a refused order must still not fit now.
		results.forEach((r, i) => {
			if (r.status === "fulfilled") return;
			expect(r.reason.type).toBe("OUT_OF_STOCK");
			expect(orders[i].some(l => available[l.sku] < l.quantity)).toBe(true);
		});
	});

	it("takes all lines or none: one short line refuses the order, names the short sku and holds nothing", async () => {
		const [a, b, c] = [newSku(), newSku(), newSku()];
		await setStock(a, 5, 5);
		await setStock(b, 5, 0);
		await setStock(c, 1, 1);
		const orderId = fresh("short");
		const movementsBefore = await query("SELECT COUNT(*) AS n FROM stock_movements");
		await expect(reserve(orderId, [{ sku: a, quantity: 2 }, { sku: b, quantity: 1 }, { sku: c, quantity: 3 }])).rejects.toMatchObject({
			code: 409,
			type: "OUT_OF_STOCK",
			data: [{ sku: c, requested: 3, available: 2 }],
		});
		expect([await stock(a), await stock(b), await stock(c)]).toEqual([
			[row("wh-east", 5, 0), row("wh-west", 5, 0)],
			[row("wh-east", 5, 0), row("wh-west", 0, 0)],
			[row("wh-east", 1, 0), row("wh-west", 1, 0)],
		]);
		expect(await query("SELECT id FROM reservations WHERE order_id = :orderId", { orderId })).toEqual([]);
		expect(await query("SELECT COUNT(*) AS n FROM stock_movements")).toEqual(movementsBefore);
	});

	it("ships from one warehouse when it can, and splits a line between warehouses when it must", async () => {
		const [a, b] = [newSku(), newSku()];
		await setStock(a, 4, 10);
		await setStock(b, 2, 1);
		expect((await reserve(fresh("one"), [{ sku: a, quantity: 3 }, { sku: b, quantity: 1 }])).allocations).toEqual([
			{ warehouseId: "wh-east", sku: a, quantity: 3 },
			{ warehouseId: "wh-east", sku: b, quantity: 1 },
		]);
		expect((await reserve(fresh("split"), [{ sku: a, quantity: 11 }])).allocations).toEqual([
			{ warehouseId: "wh-east", sku: a, quantity: 1 },
			{ warehouseId: "wh-west", sku: a, quantity: 10 },
		]);
		expect(await stock(a)).toEqual([row("wh-east", 4, 4), row("wh-west", 10, 10)]);
	});

	it("takes a whole order from the first warehouse holding every line (one statement on PostgreSQL), merging lines of one sku, and answers a repeat the same", async () => {
		const [a, b] = [newSku(), newSku()];
		// East lacks b: west is the first (by id) to hold both lines, and the only one.
		await setStock(a, 5, 5);
		await setStock(b, 1, 6);
		const orderId = fresh("west");
		const lines = [{ sku: b, quantity: 2 }, { sku: a, quantity: 1 }, { sku: b, quantity: 3 }];
		const first = await reserve(orderId, lines);
		const sorted = [a, b].sort();
		expect(first.allocations).toEqual(sorted.map(sku => ({ warehouseId: "wh-west", sku, quantity: sku === a ? 1 : 5 })));
		expect(await reserve(orderId, lines)).toEqual(first);
		expect(await stock(a)).toEqual([row("wh-east", 5, 0), row("wh-west", 5, 1)]);
		expect(await stock(b)).toEqual([row("wh-east", 1, 0), row("wh-west", 6, 5)]);
		const moves = await query("SELECT sku, warehouse_id, delta_reserved FROM stock_movements WHERE reference = :r ORDER BY sku", { r: first.reservationId });
		expect(moves.map(m => [m.sku, m.warehouse_id, Number(m.delta_reserved)])).toEqual(sorted.map(sku => [sku, "wh-west", sku === a ? 1 : 5]));
		const events = (await query("SELECT payload FROM outbox_events WHERE name = 'warehouse.stock.changed'")).map(r => (typeof r.payload === "string" ? JSON.parse(r.payload) : r.payload));
		const mine = events.filter(e => e.sku === b && e.reserved === 5);
		expect(mine).toEqual([expect.objectContaining({ sku: b, warehouseId: "wh-west", onHand: 6, reserved: 5, totalAvailable: 2 })]);
	});

	it("reserves once per key: concurrent calls and later repeats get the first reservation, another request with the key is refused", async () => {
		const sku = newSku();
		await setStock(sku, 10, 0);
		const orderId = fresh("idem");
		const answers = await Promise.all(Array.from({ length: 10 }, () => reserve(orderId, [{ sku, quantity: 2 }])));
		expect(answers).toEqual(Array(10).fill({ reservationId: answers[0].reservationId, allocations: [{ warehouseId: "wh-east", sku, quantity: 2 }] }));
		expect(await Promise.all([reserve(orderId, [{ sku, quantity: 2 }]), reserve(orderId, [{ sku, quantity: 2 }])])).toEqual([answers[0], answers[0]]);
		await expect(reserve(orderId, [{ sku, quantity: 3 }])).rejects.toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
		// One reservation per order, whatever the key.
		await expect(reserve(orderId, [{ sku, quantity: 1 }], `${orderId}:other`)).rejects.toMatchObject({ code: 409, type: "RESERVATION_EXISTS" });
		expect(await stock(sku)).toEqual([row("wh-east", 10, 2), row("wh-west", 0, 0)]);
		expect(Number((await query("SELECT COUNT(*) AS n FROM reservations WHERE order_id = :orderId", { orderId }))[0].n)).toBe(1);
	});

	it("refuses a reserve that arrives after its release (the release fenced its key), holding nothing", async () => {
		const sku = newSku();
		await setStock(sku, 5, 0);
		const orderId = fresh("late");
		expect(await broker.call("warehouse.release", { orderId, idempotencyKey: `${orderId}:release`, stepKey: `${orderId}:reserve` })).toEqual({ released: 0 });
		await expect(reserve(orderId, [{ sku, quantity: 2 }])).rejects.toMatchObject({ code: 409, type: "STEP_COMPENSATED" });
		expect(await stock(sku)).toEqual([row("wh-east", 5, 0), row("wh-west", 0, 0)]);
		expect(await query("SELECT id FROM reservations WHERE order_id = :orderId", { orderId })).toEqual([]);
	});

	it("releases what a reserve committed just before its release, when they race", async () => {
		const sku = newSku();
		await setStock(sku, 50, 0);
		for (let i = 0; i < 5; i++) {
			const orderId = fresh("race-rel");
			await Promise.allSettled([reserve(orderId, [{ sku, quantity: 1 }]), broker.call("warehouse.release", { orderId, idempotencyKey: `${orderId}:release`, stepKey: `${orderId}:reserve` })]);
		}
		expect(await stock(sku)).toEqual([row("wh-east", 50, 0), row("wh-west", 0, 0)]);
	});

	it("commits and releases once, whatever the keys, and a release after the commit puts the stock back", async () => {
		const sku = newSku();
		await setStock(sku, 6, 4);
		const orderId = fresh("life");
		await reserve(orderId, [{ sku, quantity: 8 }]);
		expect(await stock(sku)).toEqual([row("wh-east", 6, 6), row("wh-west", 4, 2)]);
		const commit = (k: string) => broker.call("warehouse.commit", { orderId, idempotencyKey: k });
		expect(await Promise.all([commit(`${orderId}:c`), commit(`${orderId}:c`), commit(`${orderId}:c2`)])).toEqual(Array(3).fill({ committed: true }));
		expect(await stock(sku)).toEqual([row("wh-east", 0, 0), row("wh-west", 2, 0)]);
		const release = (k: string) => broker.call("warehouse.release", { orderId, idempotencyKey: k });
		const [r1, r1again, r2] = (await Promise.all([release(`${orderId}:r`), release(`${orderId}:r`), release(`${orderId}:r2`)])) as any[];
		expect(r1again).toEqual(r1);
		expect(r1.released + r2.released).toBe(1);
		expect(await stock(sku)).toEqual([row("wh-east", 6, 0), row("wh-west", 4, 0)]);
		expect(await release(`${orderId}:r3`)).toEqual({ released: 0 });
		expect(await stock(sku)).toEqual([row("wh-east", 6, 0), row("wh-west", 4, 0)]);
	});

	it("releases a held reservation once, and then refuses to commit it", async () => {
		const sku = newSku();
		await setStock(sku, 3, 0);
		const orderId = fresh("rel");
		await reserve(orderId, [{ sku, quantity: 3 }]);
		expect(await broker.call("warehouse.release", { orderId, idempotencyKey: `${orderId}:r` })).toEqual({ released: 1 });
		expect(await broker.call("warehouse.release", { orderId, idempotencyKey: `${orderId}:r` })).toEqual({ released: 1 });
		expect(await broker.call("warehouse.release", { orderId, idempotencyKey: `${orderId}:r2` })).toEqual({ released: 0 });
		expect(await stock(sku)).toEqual([row("wh-east", 3, 0), row("wh-west", 0, 0)]);
		await expect(broker.call("warehouse.commit", { orderId, idempotencyKey: `${orderId}:c` })).rejects.toMatchObject({ code: 409, type: "NO_RESERVATION" });
		expect(await broker.call("warehouse.release", { orderId: fresh("none"), idempotencyKey: fresh("k") })).toEqual({ released: 0 });
	});

	it("lets the sweeper release a reservation once it expires", async () => {
		const sku = newSku();
		await setStock(sku, 2, 0);
		const orderId = fresh("expire");
		svc.settings.reservationTtlMs = 150;
		try {
			await reserve(orderId, [{ sku, quantity: 2 }]);
		} finally {
			svc.settings.reservationTtlMs = 15 * 60_000;
		}
		const kept = fresh("kept");
		await setStock(sku, 3, 0);
		await reserve(kept, [{ sku, quantity: 1 }]);
		expect(await broker.call("warehouse.availability", { sku })).toEqual({ inStock: false, quantity: 0 });
		const deadline = Date.now() + 10_000;
		while (((await broker.call("warehouse.availability", { sku })) as any).quantity !== 2) {
			if (Date.now() > deadline) throw new Error("the sweeper did not release the expired reservation");
			await new Promise(r => setTimeout(r, 25));
		}
		expect(await query("SELECT order_id, status FROM reservations WHERE order_id IN (:ids) ORDER BY status", { ids: [orderId, kept] })).toEqual([
			{ order_id: orderId, status: "EXPIRED" },
			{ order_id: kept, status: "HELD" },
		]);
		expect(await stock(sku)).toEqual([row("wh-east", 3, 1), row("wh-west", 0, 0)]);
		await expect(broker.call("warehouse.commit", { orderId, idempotencyKey: `${orderId}:c` })).rejects.toMatchObject({ code: 409, type: "NO_RESERVATION" });
	});

	it("never sets on-hand below what is reserved, and refuses unknown warehouses and bad numbers, changing nothing", async () => {
		const sku = newSku();
		await setStock(sku, 5, 0);
		await reserve(fresh("hold"), [{ sku, quantity: 4 }]);
		const movements = await query("SELECT COUNT(*) AS n FROM stock_movements WHERE sku = :sku", { sku });
		await expect(broker.call("warehouse.setOnHand", { sku, warehouseId: "wh-east", onHand: 3 }, ops)).rejects.toMatchObject({ code: 409, type: "BELOW_RESERVED", data: { reserved: 4 } });
		await expect(broker.call("warehouse.setOnHand", { sku, warehouseId: "wh-north", onHand: 3 }, ops)).rejects.toMatchObject({ code: 404, type: "WAREHOUSE_NOT_FOUND" });
		await expect(broker.call("warehouse.setOnHand", { sku, warehouseId: "wh-east", onHand: -1 }, ops)).rejects.toMatchObject({ code: 422 });
		expect(await stock(sku)).toEqual([row("wh-east", 5, 4), row("wh-west", 0, 0)]);
		expect(await query("SELECT COUNT(*) AS n FROM stock_movements WHERE sku = :sku", { sku })).toEqual(movements);
		expect(await broker.call("warehouse.setOnHand", { sku, warehouseId: "wh-east", onHand: 4 }, ops)).toEqual({ sku, warehouses: [row("wh-east", 4, 4), row("wh-west", 0, 0)] });
	});

	it("records a warehouse.stock.changed event with every change", async () => {
		const sku = newSku();
		await setStock(sku, 4, 0);
		await reserve(fresh("evt"), [{ sku, quantity: 1 }]);
		const events = (await query("SELECT name, payload FROM outbox_events WHERE name = 'warehouse.stock.changed' ORDER BY occurred_at, id"))
			.map(e => (typeof e.payload === "string" ? JSON.parse(e.payload) : e.payload))
			.filter(p => p.sku === sku)
			.map(({ eventId: _e, occurredAt: _o, ...p }) => p);
		expect(events).toEqual([
			{ sku, warehouseId: "wh-east", onHand: 4, reserved: 0, totalAvailable: 4 },
			{ sku, warehouseId: "wh-east", onHand: 4, reserved: 1, totalAvailable: 3 },
		]);
	});

	it("keeps a ledger that accounts for every unit, and no stock row below zero", async () => {
		const rows = await query("SELECT s.sku, s.warehouse_id, s.on_hand, s.reserved, COALESCE(SUM(m.delta_on_hand), 0) AS ledger_on_hand, COALESCE(SUM(m.delta_reserved), 0) AS ledger_reserved FROM stock s LEFT JOIN stock_movements m ON m.sku = s.sku AND m.warehouse_id = s.warehouse_id GROUP BY s.sku, s.warehouse_id, s.on_hand, s.reserved");
		expect(rows.length).toBeGreaterThan(260);
		const wrong = rows.filter(r => Number(r.ledger_on_hand) !== r.on_hand || Number(r.ledger_reserved) !== r.reserved || r.reserved < 0 || r.on_hand < r.reserved);
		expect(wrong).toEqual([]);
	});
});
