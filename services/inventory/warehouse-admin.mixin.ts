/**
 * Warehouse management, mixed into the warehouse service (kept apart from reservations):
 *
 * - the admin endpoints: list, create, update and deactivate warehouses (API.md), each change
 *   recorded as a warehouse.warehouse.* event (shipping takes its origin countries from them);
 *   switching `active` restates the availability of every SKU held there (warehouse.stock.changed),
 *   because an inactive warehouse counts for nothing in new reservations;
 * - bulk stock for catalogue imports (`setStockMany`) and exports (`stockLevels`), internal:
 *   one transaction per batch, an answer per line, the same never-below-reserved rule as
 *   `PUT /admin/inventory/:sku`, every change in the movement ledger.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { Op, type Transaction, col, fn, where } from "sequelize";
import { ConflictError, NotFoundError } from "../../lib/errors";
import { type WarehouseAddress, type WarehouseRecord, createWarehouseParams, totalAvailable, updateWarehouseParams, warehouseColumns, warehouseSnapshot, warehouseView } from "../../lib/inventory/warehouses";
import type { DbMethods } from "../../mixins/db.mixin";
import type { OutboxMethods, RecordedEvent } from "../../mixins/outbox.mixin";

type Svc = Service & DbMethods & OutboxMethods & { [k: string]: any };

export interface StockItem {
	sku: string;
	warehouseId: string;
	onHand: number;
	/** The import row it came from, echoed in its result. */
	line?: number;
}

export type StockResult = { line?: number; sku: string; warehouseId: string; result: "set" | "unchanged" } | { line?: number; sku: string; warehouseId: string; result: "refused"; reason: string };

/** SKUs per statement when restating a whole warehouse. */
const CHUNK = 500;
const ATTEMPTS = 3;

const schema: Partial<ServiceSchema<any, any, any, Svc>> = {
	actions: {
		/** GET /admin/warehouses → `{ items }`, by id. */
		listWarehouses: {
			auth: "admin",
			async handler(this: Svc) {
				const rows = (await this.models.Warehouse.findAll({ order: [["id", "ASC"]], raw: true })) as unknown as WarehouseRecord[];
				return { items: rows.map(warehouseView) };
			},
		},

		/** POST /admin/warehouses → 201; 409 WAREHOUSE_EXISTS. */
		createWarehouse: {
			auth: "admin",
			roles: ["ops"],
			params: createWarehouseParams,
			async handler(this: Svc, ctx: Context<{ id?: string; name: string; address: WarehouseAddress }, any>) {
				const now = new Date();
				const row: WarehouseRecord = { id: ctx.params.id ?? randomUUID(), name: ctx.params.name, ...warehouseColumns(ctx.params.address), active: true, updated_at: now };
				try {
					await this.transaction(async (t: Transaction) => {
						await this.models.Warehouse.create({ ...row, created_at: now }, { transaction: t });
						await this.recordEvent(t, "warehouse.warehouse.created", warehouseSnapshot(row));
					});
				} catch (err) {
					// The primary key decides between two creates of one id.
					if (this.isUniqueViolation(err)) throw new ConflictError(`Warehouse ${row.id} exists`, "WAREHOUSE_EXISTS");
					throw err;
				}
				ctx.meta.$statusCode = 201;
				return warehouseView(row);
			},
		},

		/** PATCH /admin/warehouses/:id → 200; 404 WAREHOUSE_NOT_FOUND. `active: false` deactivates. */
		updateWarehouse: {
			auth: "admin",
			roles: ["ops"],
			params: updateWarehouseParams,
			async handler(this: Svc, ctx: Context<{ id: string; name?: string; address?: WarehouseAddress; active?: boolean }>) {
				const { id, name, address, active } = ctx.params;
				return this.transaction(async (t: Transaction) => {
					const row = (await this.models.Warehouse.findByPk(id, { transaction: t, lock: t.LOCK.UPDATE, raw: true })) as unknown as WarehouseRecord | null;
					if (!row) throw new NotFoundError("Warehouse", "WAREHOUSE_NOT_FOUND");
					const wanted: Partial<WarehouseRecord> = { ...(name !== undefined && { name }), ...(address && warehouseColumns(address)), ...(active !== undefined && { active }) };
					const changes = Object.fromEntries(Object.entries(wanted).filter(([k, v]) => (k === "active" ? Boolean(row.active) !== v : (row as any)[k] !== v)));
					// Nothing to change: no write and no event, so a repeated PATCH is harmless.
					if (!Object.keys(changes).length) return warehouseView(row);
					const updated: WarehouseRecord = { ...row, ...changes, updated_at: new Date() };
					await this.models.Warehouse.update({ ...changes, updated_at: updated.updated_at }, { where: { id }, transaction: t });
					await this.recordEvent(t, "warehouse.warehouse.updated", warehouseSnapshot(updated));
					if ("active" in changes) await this.restateWarehouse(t, id);
					return warehouseView(updated);
				});
			},
		},

		/** Internal: every warehouse's snapshot, for read models rebuilding themselves (shipping origins). */
		warehouseSnapshots: {
			async handler(this: Svc) {
				const rows = (await this.models.Warehouse.findAll({ order: [["id", "ASC"]], raw: true })) as unknown as WarehouseRecord[];
				return { items: rows.map(warehouseSnapshot) };
			},
		},

		/** Internal (catalogue import): sets on-hand for many (sku, warehouse) pairs; an answer per item. */
		setStockMany: {
			params: {
				items: {
					type: "array",
					max: 5000,
					items: { type: "object", strict: true, props: { sku: "string|min:1|max:64", warehouseId: "string|min:1|max:64", onHand: "number|integer|min:0|max:10000000", line: "number|integer|min:0|optional" } },
				},
				dryRun: "boolean|optional",
				reference: "string|max:64|optional",
			},
			async handler(this: Svc, ctx: Context<{ items: StockItem[]; dryRun?: boolean; reference?: string }>) {
				for (let attempt = 1; ; attempt++) {
					try {
						return { results: await this.setStockBatch(ctx.params.items, ctx.params.dryRun === true, ctx.params.reference ?? null) };
					} catch (err) {
						// A stock row created meanwhile (PUT /admin/inventory, another import): plan the batch again.
						if (!this.isUniqueViolation(err) || attempt >= ATTEMPTS) throw err;
					}
				}
			},
		},

		/** Internal (catalogue export): on-hand per warehouse of each SKU that has stock rows. */
		stockLevels: {
			params: { skus: { type: "array", items: "string|min:1|max:64", max: 1000 } },
			async handler(this: Svc, ctx: Context<{ skus: string[] }>) {
				const rows: any[] = ctx.params.skus.length ? await this.models.Stock.findAll({ where: { sku: { [Op.in]: ctx.params.skus } }, raw: true }) : [];
				const out: Record<string, Record<string, number>> = {};
				for (const r of rows) (out[r.sku] ??= {})[r.warehouse_id] = r.on_hand;
				return out;
			},
		},
	},

	methods: {
		/**
		 * The spelling under which stock of `sku` is kept. A SKU is unique regardless of case
		 * (API.md): `PUT /admin/inventory/bt-1005` must change the stock of BT-1005, not start a
		 * second line "bt-1005" that no product's availability ever reads (issue 9, second round).
		 * The exact spelling first (an index hit), then any case; a SKU with no stock yet is kept as sent.
		 */
		async storedSku(this: Svc, sku: string, t?: Transaction): Promise<string> {
			if (await this.models.Stock.findOne({ where: { sku }, attributes: ["sku"], transaction: t, raw: true })) return sku;
			const other: any = await this.models.Stock.findOne({ where: where(fn("lower", col("sku")), sku.toLowerCase()), attributes: ["sku"], order: [["sku", "ASC"]], transaction: t, raw: true });
			return other?.sku ?? sku;
		},

		async setStockBatch(this: Svc, items: StockItem[], dryRun: boolean, reference: string | null): Promise<StockResult[]> {
			const run = async (t?: Transaction) => {
				const warehouses = new Map<string, boolean>(((await this.models.Warehouse.findAll({ attributes: ["id", "active"], transaction: t, raw: true })) as any[]).map(w => [w.id, Boolean(w.active)]));
				const skus = [...new Set(items.map(i => i.sku))].sort();
				// Locked in one order (sku, warehouse), as reservations lock them, so the two never deadlock.
				const rows: any[] = skus.length
					? await this.models.Stock.findAll({ where: { sku: { [Op.in]: skus } }, order: [["sku", "ASC"], ["warehouse_id", "ASC"]], transaction: t, ...(t && { lock: t.LOCK.UPDATE }), raw: true })
					: [];
				const stock = new Map<string, { sku: string; warehouse_id: string; on_hand: number; reserved: number }>(rows.map(r => [`${r.sku}\u0000${r.warehouse_id}`, { ...r }]));
				const results: StockResult[] = [];
				const inserts: any[] = [];
				const updates: { sku: string; warehouse_id: string; from: number; to: number }[] = [];
				const seen = new Set<string>();
				for (const item of items) {
					const { sku, warehouseId, onHand, line } = item;
					const refuse = (reason: string) => results.push({ ...(line !== undefined && { line }), sku, warehouseId, result: "refused", reason });
					const key = `${sku}\u0000${warehouseId}`;
					if (!warehouses.has(warehouseId)) {
						refuse(`unknown warehouse "${warehouseId}"`);
						continue;
					}
					if (seen.has(key)) {
						refuse(`stock of ${sku} at ${warehouseId} is given twice`);
						continue;
					}
					seen.add(key);
					const row = stock.get(key);
					if (row?.on_hand === onHand) {
						results.push({ ...(line !== undefined && { line }), sku, warehouseId, result: "unchanged" });
						continue;
					}
					if (row && onHand < row.reserved) {
						refuse(`on hand ${onHand} at ${warehouseId} would be below the ${row.reserved} reserved`);
						continue;
					}
					if (row) {
						updates.push({ sku, warehouse_id: warehouseId, from: row.on_hand, to: onHand });
						row.on_hand = onHand;
					} else {
						const created = { sku, warehouse_id: warehouseId, on_hand: onHand, reserved: 0 };
						inserts.push(created);
						stock.set(key, created);
					}
					results.push({ ...(line !== undefined && { line }), sku, warehouseId, result: "set" });
				}
				if (!t) return results;

				if (inserts.length) await this.models.Stock.bulkCreate(inserts, { transaction: t });
				for (const u of updates) {
					// Conditional as PUT /admin/inventory is: the row is locked, so this only fails if the ledger disagrees.
					const [n] = await this.models.Stock.update({ on_hand: u.to }, { where: { sku: u.sku, warehouse_id: u.warehouse_id, on_hand: u.from, reserved: { [Op.lte]: u.to } }, transaction: t });
					if (!n) throw new Error(`Stock of ${u.sku} at ${u.warehouse_id} changed under its lock`);
				}
				const now = new Date();
				const changed = [...inserts.map(i => ({ sku: i.sku, warehouse_id: i.warehouse_id, delta: i.on_hand })), ...updates.map(u => ({ sku: u.sku, warehouse_id: u.warehouse_id, delta: u.to - u.from }))];
				await this.models.Movement.bulkCreate(
					changed.map(c => ({ sku: c.sku, warehouse_id: c.warehouse_id, delta_on_hand: c.delta, delta_reserved: 0, reason: "ADJUST", reference, created_at: now })),
					{ transaction: t },
				);
				const bySku = new Map<string, { on_hand: number; reserved: number; active: boolean }[]>();
				for (const r of stock.values()) {
					const list = bySku.get(r.sku) ?? [];
					list.push({ on_hand: r.on_hand, reserved: r.reserved, active: warehouses.get(r.warehouse_id) ?? false });
					bySku.set(r.sku, list);
				}
				const events: RecordedEvent[] = changed.map(c => {
					const here = stock.get(`${c.sku}\u0000${c.warehouse_id}`)!;
					return { name: "warehouse.stock.changed", payload: { sku: c.sku, warehouseId: c.warehouse_id, onHand: here.on_hand, reserved: here.reserved, totalAvailable: totalAvailable(bySku.get(c.sku)!) } };
				});
				await this.recordEvents(t, events);
				return results;
			};
			return dryRun ? run() : this.transaction(run);
		},

		/**
		 * After a warehouse was switched on or off, every SKU it holds can reserve more or less:
		 * one warehouse.stock.changed per SKU with its new total, so search's in-stock facet follows.
		 */
		async restateWarehouse(this: Svc, t: Transaction, warehouseId: string) {
			const held: any[] = await this.models.Stock.findAll({ attributes: ["sku"], where: { warehouse_id: warehouseId }, order: [["sku", "ASC"]], transaction: t, raw: true });
			const active = new Map<string, boolean>(((await this.models.Warehouse.findAll({ attributes: ["id", "active"], transaction: t, raw: true })) as any[]).map(w => [w.id, Boolean(w.active)]));
			for (let i = 0; i < held.length; i += CHUNK) {
				const skus = held.slice(i, i + CHUNK).map(r => r.sku);
				const rows: any[] = await this.models.Stock.findAll({ where: { sku: { [Op.in]: skus } }, transaction: t, raw: true });
				const events: RecordedEvent[] = skus.map(sku => {
					const of = rows.filter(r => r.sku === sku).map(r => ({ ...r, active: active.get(r.warehouse_id) ?? false }));
					const here = of.find(r => r.warehouse_id === warehouseId)!;
					return { name: "warehouse.stock.changed", payload: { sku, warehouseId, onHand: here.on_hand, reserved: here.reserved, totalAvailable: totalAvailable(of) } };
				});
				await this.recordEvents(t, events);
			}
		},
	},
};

/** Typed against the warehouse service it is mixed into; the broker sees an ordinary partial schema. */
export const WarehouseAdminMixin = schema as unknown as Partial<ServiceSchema>;
