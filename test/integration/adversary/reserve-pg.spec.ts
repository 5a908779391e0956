/**
 * warehouse.reserve on PostgreSQL, written by the adversary review of issue 7: the one-statement
 * path (a single warehouse chosen by the statement) and the split path against the JavaScript
 * allocator (lib/inventory/allocation.ts) on random levels, races with releases, commits and a
 * deactivation, inactive and mixed-case warehouse ids, duplicate lines, one idempotency key from
 * many callers, the stock events' payloads and the ledger.
 */
import { ServiceBroker } from "moleculer";
import { QueryTypes, Sequelize } from "sequelize";
import { useTestEnv } from "../../support/env";
import { allocate, bySkuThenWarehouse } from "../../../lib/inventory/allocation";

const PG = "postgres://postgres@127.0.0.1:5432/postgres";
const env = { DATABASE_URL: PG, DB_NAME_PREFIX: `tadv_${Math.random().toString(36).slice(2, 8)}_` };
let n = 0;
const fresh = (prefix: string) => `${prefix}-${++n}-${Math.random().toString(36).slice(2, 8)}`;
const newSku = () => `A-${++n}-${Math.random().toString(36).slice(2, 8).toUpperCase()}`;
const WH = ["wh-B", "wh-a", "WH-c", "wh-A1", "wh-b"];
const addr = { line1: "1 Road", city: "X", postalCode: "12345", country: "US" };

describe("reserve adversary (PostgreSQL)", () => {
	jest.setTimeout(180_000);
	let broker: ServiceBroker;
	let svc: any;
	let db: Sequelize;
	const ops = { meta: { user: { id: "o", typ: "admin", roles: ["ops"] } } };
	const query = (sql: string, replacements: Record<string, unknown> = {}) => db.query(sql, { type: QueryTypes.SELECT, replacements }) as Promise<any[]>;
	const reserve = (orderId: string, lines: { sku: string; quantity: number }[], idempotencyKey = `${orderId}:reserve`) =>
		broker.call("warehouse.reserve", { orderId, lines, idempotencyKey }) as Promise<any>;
	const setOnHand = (sku: string, warehouseId: string, onHand: number) => broker.call("warehouse.setOnHand", { sku, warehouseId, onHand }, ops);

	beforeAll(async () => {
		useTestEnv(env);
		const { brokerOptions } = require("../../../moleculer.config") as typeof import("../../../moleculer.config");
		const { loadServiceSchema } = require("../../../services") as typeof import("../../../services");
		broker = new ServiceBroker(brokerOptions({ logger: false, namespace: `whadv-${Math.random()}` }));
		broker.createService({ name: "warehouse", mixins: [loadServiceSchema("warehouse")], settings: { sweepIntervalMs: 60_000 } });
		await broker.start();
		svc = broker.getLocalService("warehouse");
		db = svc.sequelize;
		for (const id of WH) await broker.call("warehouse.createWarehouse", { id, name: id, address: addr }, ops);
	});

	afterAll(async () => {
		await broker?.stop();
		const admin = new Sequelize(PG, { logging: false });
		const rows = await admin.query(`SELECT datname FROM pg_database WHERE datname LIKE '${env.DB_NAME_PREFIX}%'`, { type: QueryTypes.SELECT });
		for (const r of rows as any[]) await admin.query(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`);
		await admin.close();
	});

	async function activeLevels(skus: string[]) {
		const rows = await query(`SELECT sku, warehouse_id, on_hand, reserved FROM stock WHERE sku IN (:skus) AND warehouse_id IN (SELECT id FROM warehouses WHERE active)`, { skus });
		return rows.map(r => ({ sku: r.sku, warehouseId: r.warehouse_id, available: Number(r.on_hand) - Number(r.reserved) }));
	}

	it("chooses what the JS allocator chooses for the same levels (random, sequential, incl. duplicate lines)", async () => {
		const diffs: any[] = [];
		let rnd = 12345;
		const rand = (k: number) => ((rnd = (rnd * 1103515245 + 12345) & 0x7fffffff), rnd % k);
		for (let i = 0; i < 60; i++) {
			const skus = Array.from({ length: 1 + rand(3) }, newSku);
			for (const sku of skus) for (const w of WH) if (rand(3)) await setOnHand(sku, w, rand(6));
			const lines = skus.map(sku => ({ sku, quantity: 1 + rand(4) }));
			if (rand(3) === 0) lines.push({ sku: skus[0], quantity: 1 + rand(2) });
			const levels = await activeLevels(skus);
			const js = allocate(lines, levels);
			let got: any;
			try {
				got = await reserve(fresh("cmp"), lines);
			} catch (err: any) {
				got = { err: err.type, data: err.data };
			}
			const want = js.ok ? { allocations: [...js.allocations].sort(bySkuThenWarehouse) } : { err: "OUT_OF_STOCK", data: js.short };
			const have = got.err ? got : { allocations: [...got.allocations].sort(bySkuThenWarehouse) };
			if (JSON.stringify(have) !== JSON.stringify(want)) diffs.push({ lines, levels, want, have });
		}
		expect(diffs).toEqual([]);
	});

	it("same key concurrently and repeated: one reservation, every answer identical to the first", async () => {
		const sku = newSku();
		await setOnHand(sku, "wh-a", 3);
		await setOnHand(sku, "wh-B", 3);
		const order = fresh("idem");
		const answers = await Promise.allSettled(Array.from({ length: 20 }, () => reserve(order, [{ sku, quantity: 2 }], "K-" + order)));
		const ok = answers.filter(a => a.status === "fulfilled").map(a => (a as any).value);
		const bad = answers.filter(a => a.status === "rejected").map(a => ({ type: (a as any).reason.type, msg: (a as any).reason.message }));
		const again = await reserve(order, [{ sku, quantity: 2 }], "K-" + order);
		expect(bad).toEqual([]);
		for (const a of ok) expect(a).toEqual(ok[0]);
		expect(again).toEqual(ok[0]);
		expect(await query(`SELECT count(*)::int AS c FROM reservations WHERE order_id = :order`, { order })).toEqual([{ c: 1 }]);
		// split case, same key twice
		const sku2 = newSku();
		await setOnHand(sku2, "wh-a", 1);
		await setOnHand(sku2, "wh-B", 1);
		const o2 = fresh("idem2");
		const s = await Promise.all(Array.from({ length: 10 }, () => reserve(o2, [{ sku: sku2, quantity: 2 }, { sku, quantity: 1 }], "K-" + o2)));
		for (const a of s) expect(a).toEqual(s[0]);
		expect(await reserve(o2, [{ sku: sku2, quantity: 2 }, { sku, quantity: 1 }], "K-" + o2)).toEqual(s[0]);
	});

	it("a deactivated warehouse takes no new reservation (single and split path)", async () => {
		const sku = newSku();
		await setOnHand(sku, "wh-A1", 100); // sorts first among the WH ids in byte order after "WH-c"
		await setOnHand(sku, "wh-a", 1);
		await broker.call("warehouse.updateWarehouse", { id: "WH-c", active: false }, ops);
		await setOnHand(sku, "WH-c", 100);
		await broker.call("warehouse.updateWarehouse", { id: "wh-A1", active: false }, ops);
		const r1 = await reserve(fresh("inact"), [{ sku, quantity: 1 }]);
		expect(r1.allocations.map((a: any) => a.warehouseId)).toEqual(["wh-a"]);
		await expect(reserve(fresh("inact"), [{ sku, quantity: 1 }])).rejects.toMatchObject({ type: "OUT_OF_STOCK" });
		await broker.call("warehouse.updateWarehouse", { id: "wh-A1", active: true }, ops);
		await broker.call("warehouse.updateWarehouse", { id: "WH-c", active: true }, ops);
	});

	it("races: invariants, ledger, answers vs lines, event payloads", async () => {
		const skus = Array.from({ length: 4 }, newSku);
		for (const sku of skus) for (const w of WH) await setOnHand(sku, w, 3 + (w.length % 3));
		let rnd = 777;
		const rand = (k: number) => ((rnd = (rnd * 1103515245 + 12345) & 0x7fffffff), rnd % k);
		const started = new Date(Date.now() - 1000);
		const orders: { order: string; lines: any[] }[] = [];
		const tasks: Promise<unknown>[] = [];
		const results: any[] = [];
		for (let i = 0; i < 160; i++) {
			const lines = Array.from({ length: 1 + rand(3) }, () => ({ sku: skus[rand(skus.length)], quantity: 1 + rand(4) }));
			const order = fresh("race");
			orders.push({ order, lines });
			tasks.push(
				reserve(order, lines).then(
					async a => {
						results.push({ order, a });
						const r = rand(3);
						if (r === 0) await broker.call("warehouse.release", { orderId: order, idempotencyKey: `${order}:rel` });
						else if (r === 1) await broker.call("warehouse.commit", { orderId: order, idempotencyKey: `${order}:cm` });
					},
					e => results.push({ order, e: e.type ?? e.message }),
				),
			);
			if (i === 80) tasks.push(broker.call("warehouse.updateWarehouse", { id: "wh-b", active: false }, ops) as Promise<unknown>);
		}
		await Promise.all(tasks);
		const errs = results.filter(r => r.e && r.e !== "OUT_OF_STOCK");
		expect(errs).toEqual([]);
		const stock = await query(`SELECT sku, warehouse_id, on_hand, reserved FROM stock WHERE sku IN (:skus)`, { skus });
		for (const s of stock) {
			expect(s.on_hand).toBeGreaterThanOrEqual(s.reserved);
			expect(s.reserved).toBeGreaterThanOrEqual(0);
		}
		// reserved equals the HELD lines; on_hand/reserved equal the ledger.
		const held = await query(
			`SELECT l.sku, l.warehouse_id, SUM(l.quantity)::int AS q FROM reservation_lines l JOIN reservations r ON r.id = l.reservation_id WHERE r.status = 'HELD' AND l.sku IN (:skus) GROUP BY 1, 2`,
			{ skus },
		);
		const ledger = await query(`SELECT sku, warehouse_id, SUM(delta_on_hand)::int AS oh, SUM(delta_reserved)::int AS rs FROM stock_movements WHERE sku IN (:skus) GROUP BY 1, 2`, { skus });
		for (const s of stock) {
			const h = held.find(x => x.sku === s.sku && x.warehouse_id === s.warehouse_id)?.q ?? 0;
			const l = ledger.find(x => x.sku === s.sku && x.warehouse_id === s.warehouse_id);
			expect({ k: `${s.sku}/${s.warehouse_id}`, reserved: s.reserved, onHand: s.on_hand }).toEqual({ k: `${s.sku}/${s.warehouse_id}`, reserved: h, onHand: l?.oh ?? 0 });
			expect(l?.rs ?? 0).toBe(s.reserved);
		}
		// Every answer equals its reservation lines, and lines sum to what was asked per sku.
		for (const r of results.filter(x => x.a)) {
			const o = orders.find(x => x.order === r.order)!;
			const lines = await query(`SELECT l.sku, l.warehouse_id AS "warehouseId", l.quantity FROM reservation_lines l JOIN reservations r ON r.id = l.reservation_id WHERE r.order_id = :order`, { order: r.order });
			expect([...lines].sort(bySkuThenWarehouse)).toEqual([...r.a.allocations].sort(bySkuThenWarehouse));
			const asked: Record<string, number> = {};
			for (const l of o.lines) asked[l.sku] = (asked[l.sku] ?? 0) + l.quantity;
			const got: Record<string, number> = {};
			for (const l of lines) got[l.sku] = (got[l.sku] ?? 0) + l.quantity;
			expect(got).toEqual(asked);
		}
		// The stored idempotency answers equal the answers returned.
		for (const r of results.filter(x => x.a)) {
			const [k] = await query(`SELECT answer FROM idempotency_keys WHERE scope = 'warehouse' AND key = :key`, { key: `${r.order}:reserve` });
			const stored = typeof k.answer === "string" ? JSON.parse(k.answer) : k.answer;
			expect(stored).toEqual(r.a);
		}
		// stock.changed payloads of RESERVE writes: warehouseId present; each payload's onHand/reserved >= 0, totalAvailable >= 0.
		const ev = await query(`SELECT payload FROM outbox_events WHERE name = 'warehouse.stock.changed' AND occurred_at >= :started`, { started });
		const payloads = ev.map(e => (typeof e.payload === "string" ? JSON.parse(e.payload) : e.payload)).filter(p => skus.includes(p.sku));
		for (const p of payloads) {
			expect(typeof p.warehouseId).toBe("string");
			expect(p.totalAvailable).toBeGreaterThanOrEqual(0);
			expect(p.onHand).toBeGreaterThanOrEqual(p.reserved);
		}
	});

	it("events of a single-statement reserve match the table", async () => {
		const sku = newSku();
		const sku2 = newSku();
		await setOnHand(sku, "wh-a", 5);
		await setOnHand(sku, "wh-B", 7);
		await setOnHand(sku2, "wh-a", 5);
		await setOnHand(sku2, "wh-B", 7);
		await new Promise(r => setTimeout(r, 30));
		const t0 = new Date();
		const a = await reserve(fresh("ev"), [{ sku, quantity: 2 }, { sku: sku2, quantity: 3 }, { sku, quantity: 1 }]);
		expect(a.allocations).toEqual([...a.allocations].sort(bySkuThenWarehouse));
		const ev = await query(`SELECT payload FROM outbox_events WHERE name = 'warehouse.stock.changed' AND occurred_at >= :t0`, { t0 });
		const payloads = ev.map(e => (typeof e.payload === "string" ? JSON.parse(e.payload) : e.payload)).filter(p => p.sku === sku || p.sku === sku2);
		const stock = await query(`SELECT sku, warehouse_id, on_hand, reserved FROM stock WHERE sku IN (:skus)`, { skus: [sku, sku2] });
		const total = (k: string) => stock.filter(s => s.sku === k).reduce((n, s) => n + s.on_hand - s.reserved, 0);
		expect(payloads.map(p => ({ sku: p.sku, w: p.warehouseId, oh: p.onHand, rs: p.reserved, t: p.totalAvailable })).sort((x, y) => (x.sku < y.sku ? -1 : 1))).toEqual(
			[
				{ sku, w: "wh-B", oh: 7, rs: 3, t: total(sku) },
				{ sku: sku2, w: "wh-B", oh: 7, rs: 3, t: total(sku2) },
			].sort((x, y) => (x.sku < y.sku ? -1 : 1)),
		);
	});
});
