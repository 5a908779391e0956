/**
 * Warehouse: stock per (sku, warehouse), reservations that take all lines or none, a ledger of
 * stock movements, and expiry of forgotten reservations. Every quantity change is a conditional
 * UPDATE inside one transaction, recorded as a movement in that transaction, so concurrent
 * checkouts can never oversell or drive stock below zero. Only active warehouses take new
 * reservations. Managing warehouses and bulk stock live in warehouse-admin.mixin.ts.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, Op, QueryTypes, type Transaction } from "sequelize";
import { config } from "../../config";
import { DEMO_PRODUCTS } from "../../lib/catalog/demo-data";
import { SKU_RULE } from "../../lib/catalog/product";
import { ConflictError, NotFoundError } from "../../lib/errors";
import { faultPoint } from "../../lib/faults";
import { type Allocation, allocate, bySkuThenWarehouse } from "../../lib/inventory/allocation";
import { DEMO_WAREHOUSES, totalAvailable, warehouseColumns, warehouseSnapshot } from "../../lib/inventory/warehouses";
import { AccessMixin } from "../../mixins/access.mixin";
import { DbMixin, type DbMethods, type Migration } from "../../mixins/db.mixin";
import { IdempotencyMixin, type IdempotencyMethods, idempotencyMigrations } from "../../mixins/idempotency.mixin";
import { OutboxMixin, type OutboxMethods, outboxMigrations } from "../../mixins/outbox.mixin";
import { WarehouseAdminMixin } from "./warehouse-admin.mixin";

const migrations: Migration[] = [
	{
		name: "001-warehouse",
		async up(qi, T) {
			await qi.createTable("warehouses", { id: { type: T.STRING(36), primaryKey: true }, name: { type: T.STRING(100), allowNull: false } });
			await qi.createTable("stock", {
				sku: { type: T.STRING(64), primaryKey: true },
				warehouse_id: { type: T.STRING(36), primaryKey: true },
				on_hand: { type: T.INTEGER, allowNull: false },
				reserved: { type: T.INTEGER, allowNull: false },
			});
			await qi.createTable("reservations", {
				id: { type: T.STRING(36), primaryKey: true },
				order_id: { type: T.STRING(36), allowNull: false },
				status: { type: T.STRING(16), allowNull: false },
				expires_at: { type: T.DATE(3), allowNull: false },
				created_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("reservations", ["order_id"]);
			await qi.addIndex("reservations", ["status", "expires_at"]);
			await qi.createTable("reservation_lines", {
				reservation_id: { type: T.STRING(36), primaryKey: true },
				sku: { type: T.STRING(64), primaryKey: true },
				warehouse_id: { type: T.STRING(36), primaryKey: true },
				quantity: { type: T.INTEGER, allowNull: false },
			});
			await qi.createTable("stock_movements", {
				id: { type: T.INTEGER, primaryKey: true, autoIncrement: true },
				sku: { type: T.STRING(64), allowNull: false },
				warehouse_id: { type: T.STRING(36), allowNull: false },
				delta_on_hand: { type: T.INTEGER, allowNull: false },
				delta_reserved: { type: T.INTEGER, allowNull: false },
				reason: { type: T.STRING(20), allowNull: false },
				reference: { type: T.STRING(64), allowNull: true },
				created_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("stock_movements", ["sku", "warehouse_id"]);
		},
	},
	...idempotencyMigrations,
	...outboxMigrations,
	{
		name: "002-reservation-keys",
		async up(qi, T) {
			// One reservation per idempotency key, decided by the database even if a key's first call was lost.
			await qi.addColumn("reservations", "idempotency_key", { type: T.STRING(255), allowNull: true });
			await qi.addIndex("reservations", ["idempotency_key"], { unique: true, name: "reservations_idempotency_key" });
		},
	},
	{
		name: "i12-001-warehouse-details",
		async up(qi, T) {
			// A warehouse has an address (its country is the shipping origin) and can be switched off.
			for (const column of ["line1", "line2", "city", "postal_code", "country"]) await qi.addColumn("warehouses", column, { type: T.STRING(column === "country" ? 2 : 200), allowNull: true });
			await qi.addColumn("warehouses", "active", { type: T.BOOLEAN, allowNull: false, defaultValue: true });
			await qi.addColumn("warehouses", "created_at", { type: T.DATE(3), allowNull: true });
			await qi.addColumn("warehouses", "updated_at", { type: T.DATE(3), allowNull: true });
			// The demo warehouses of earlier versions get the addresses the demo data now gives them.
			for (const w of DEMO_WAREHOUSES) await qi.bulkUpdate("warehouses", { ...warehouseColumns(w.address), updated_at: new Date() }, { id: w.id });
		},
	},
];

type Svc = Service & DbMethods & OutboxMethods & IdempotencyMethods & { [k: string]: any };
type Line = { sku: string; quantity: number };
const key = "string|min:1|max:255";
const orderId = "string|min:1|max:36";

const WarehouseService: ServiceSchema<any, any, any, Svc> = {
	name: "warehouse",
	mixins: [
		DbMixin({
			name: "warehouse",
			migrations,
			models: s => ({
				Stock: s.define("Stock", { sku: { type: DataTypes.STRING(64), primaryKey: true }, warehouse_id: { type: DataTypes.STRING(36), primaryKey: true }, on_hand: DataTypes.INTEGER, reserved: DataTypes.INTEGER }, { tableName: "stock", timestamps: false }),
				Warehouse: s.define(
					"Warehouse",
					{
						id: { type: DataTypes.STRING(36), primaryKey: true },
						name: DataTypes.STRING(100),
						line1: DataTypes.STRING(200),
						line2: DataTypes.STRING(200),
						city: DataTypes.STRING(200),
						postal_code: DataTypes.STRING(200),
						country: DataTypes.STRING(2),
						active: DataTypes.BOOLEAN,
						created_at: DataTypes.DATE(3),
						updated_at: DataTypes.DATE(3),
					},
					{ tableName: "warehouses", timestamps: false },
				),
				Reservation: s.define("Reservation", { id: { type: DataTypes.STRING(36), primaryKey: true }, order_id: DataTypes.STRING(36), idempotency_key: DataTypes.STRING(255), status: DataTypes.STRING(16), expires_at: DataTypes.DATE(3), created_at: DataTypes.DATE(3) }, { tableName: "reservations", timestamps: false }),
				Line: s.define("ReservationLine", { reservation_id: { type: DataTypes.STRING(36), primaryKey: true }, sku: { type: DataTypes.STRING(64), primaryKey: true }, warehouse_id: { type: DataTypes.STRING(36), primaryKey: true }, quantity: DataTypes.INTEGER }, { tableName: "reservation_lines", timestamps: false }),
				Movement: s.define("StockMovement", { id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true }, sku: DataTypes.STRING(64), warehouse_id: DataTypes.STRING(36), delta_on_hand: DataTypes.INTEGER, delta_reserved: DataTypes.INTEGER, reason: DataTypes.STRING(20), reference: DataTypes.STRING(64), created_at: DataTypes.DATE(3) }, { tableName: "stock_movements", timestamps: false }),
			}),
		}),
		IdempotencyMixin,
		OutboxMixin,
		AccessMixin,
		WarehouseAdminMixin,
	],

	/** Tests shorten both; the design's 15 minutes otherwise. */
	settings: { reservationTtlMs: 15 * 60_000, sweepIntervalMs: 30_000 },

	actions: {
		reserve: {
			params: { orderId, lines: { type: "array", min: 1, max: 100, items: { type: "object", strict: true, props: { sku: "string|min:1|max:64", quantity: "number|integer|min:1|max:1000" } } }, idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; lines: Line[]; idempotencyKey: string }>) {
				const { lines, idempotencyKey } = ctx.params;
				return this.once("reserve", idempotencyKey, ctx.params, () => this.reserveLines(ctx.params.orderId, lines, idempotencyKey), { waitMs: 5000 });
			},
		},

		release: {
			params: { orderId, idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string }>) {
				return this.once("release", ctx.params.idempotencyKey, ctx.params, () => this.releaseOrder(ctx.params.orderId), { waitMs: 5000 });
			},
		},

		commit: {
			params: { orderId, idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string }>) {
				return this.once("commit", ctx.params.idempotencyKey, ctx.params, () => this.commitOrder(ctx.params.orderId), { waitMs: 5000 });
			},
		},

		availability: {
			params: { sku: "string|min:1|max:64" },
			async handler(this: Svc, ctx: Context<{ sku: string }>) {
				return (await this.availabilityOf([ctx.params.sku]))[ctx.params.sku];
			},
		},

		availabilityMany: {
			params: { skus: { type: "array", items: "string|min:1|max:64", max: 500 } },
			handler(this: Svc, ctx: Context<{ skus: string[] }>) {
				return this.availabilityOf(ctx.params.skus);
			},
		},

		stock: {
			auth: "admin",
			params: { sku: "string|min:1|max:64" },
			async handler(this: Svc, ctx: Context<{ sku: string }>) {
				const rows: any[] = await this.models.Stock.findAll({ where: { sku: ctx.params.sku }, order: [["warehouse_id", "ASC"]], raw: true });
				if (!rows.length) throw new NotFoundError("Stock for this SKU", "SKU_NOT_FOUND");
				return this.stockView(ctx.params.sku, rows);
			},
		},

		setOnHand: {
			auth: "admin",
			roles: ["ops"],
			params: { sku: SKU_RULE, warehouseId: "string|min:1|max:36", onHand: "number|integer|min:0|max:10000000" },
			async handler(this: Svc, ctx: Context<{ sku: string; warehouseId: string; onHand: number }>) {
				const { sku, warehouseId, onHand } = ctx.params;
				if (!(await this.models.Warehouse.findByPk(warehouseId))) throw new NotFoundError("Warehouse", "WAREHOUSE_NOT_FOUND");
				await this.transaction(async (t: Transaction) => {
					await this.models.Stock.bulkCreate([{ sku, warehouse_id: warehouseId, on_hand: 0, reserved: 0 }], { ignoreDuplicates: true, transaction: t });
					const row: any = await this.models.Stock.findOne({ where: { sku, warehouse_id: warehouseId }, transaction: t, lock: t.LOCK.UPDATE, raw: true });
					if (row.on_hand === onHand) return;
					// Never below what customers already hold: the condition is in the UPDATE itself.
					const [n] = await this.models.Stock.update({ on_hand: onHand }, { where: { sku, warehouse_id: warehouseId, on_hand: row.on_hand, reserved: { [Op.lte]: onHand } }, transaction: t });
					if (!n) throw new ConflictError(`On hand cannot go below the ${row.reserved} reserved`, "BELOW_RESERVED", { reserved: row.reserved });
					await this.movement(t, sku, warehouseId, onHand - row.on_hand, 0, "ADJUST", null);
					await this.stockChanged(t, sku, warehouseId);
				});
				return this.stockView(sku, await this.models.Stock.findAll({ where: { sku }, order: [["warehouse_id", "ASC"]], raw: true }));
			},
		},

		/** Two warehouses and stock for the demo catalog; adds only what is missing. */
		seedDemo: {
			handler(this: Svc) {
				return this.seedDemoStock();
			},
		},
	},

	methods: {
		async reserveLines(this: Svc, orderId: string, lines: Line[], idempotencyKey: string) {
			const earlier = await this.reservationByKey(idempotencyKey);
			if (earlier) return earlier;
			try {
				return await this.transaction(async (t: Transaction) => {
					const skus = [...new Set(lines.map(l => l.sku))].sort();
					// Locked in one order (sku, warehouse) so the plan holds to the commit and reservations never deadlock.
					// Inactive warehouses take no new reservations (API.md); what they hold already stays reserved.
					const rows: any[] = await this.models.Stock.findAll({ where: { sku: { [Op.in]: skus }, warehouse_id: { [Op.in]: this.activeWarehouseIds() } }, order: [["sku", "ASC"], ["warehouse_id", "ASC"]], transaction: t, lock: t.LOCK.UPDATE, raw: true });
					const levels = rows.map(r => ({ sku: r.sku, warehouseId: r.warehouse_id, available: r.on_hand - r.reserved }));
					const plan = allocate(lines, levels);
					if (!plan.ok) throw new ConflictError("Not enough stock", "OUT_OF_STOCK", plan.short);
					const allocations = [...plan.allocations].sort(bySkuThenWarehouse);
					const reservationId = randomUUID();
					for (const a of allocations) {
						// The database has the last word: a row without enough left updates nothing and the whole reservation rolls back.
						const [n] = await this.models.Stock.update(
							{ reserved: this.sequelize.literal(`reserved + ${a.quantity}`) },
							{ where: { sku: a.sku, warehouse_id: a.warehouseId, [Op.and]: this.sequelize.literal(`on_hand - reserved >= ${a.quantity}`) }, transaction: t },
						);
						if (!n) {
							const requested = lines.filter(l => l.sku === a.sku).reduce((s, l) => s + l.quantity, 0);
							const available = levels.filter(l => l.sku === a.sku).reduce((s, l) => s + l.available, 0);
							throw new ConflictError("Not enough stock", "OUT_OF_STOCK", [{ sku: a.sku, requested, available }]);
						}
						await this.movement(t, a.sku, a.warehouseId, 0, a.quantity, "RESERVE", reservationId);
					}
					const now = new Date();
					await this.models.Reservation.create({ id: reservationId, order_id: orderId, idempotency_key: idempotencyKey, status: "HELD", expires_at: new Date(now.getTime() + this.settings.reservationTtlMs), created_at: now }, { transaction: t });
					await this.models.Line.bulkCreate(allocations.map(a => ({ reservation_id: reservationId, sku: a.sku, warehouse_id: a.warehouseId, quantity: a.quantity })), { transaction: t });
					for (const a of allocations) await this.stockChanged(t, a.sku, a.warehouseId);
					return { reservationId, allocations };
				});
			} catch (err) {
				// The same key reserved meanwhile (its first call's answer was lost): that reservation is the answer.
				const raced = this.isUniqueViolation(err) ? await this.reservationByKey(idempotencyKey) : undefined;
				if (raced) return raced;
				throw err;
			}
		},

		async reservationByKey(this: Svc, idempotencyKey: string): Promise<{ reservationId: string; allocations: Allocation[] } | undefined> {
			const r: any = await this.models.Reservation.findOne({ where: { idempotency_key: idempotencyKey }, raw: true });
			if (!r) return undefined;
			return { reservationId: r.id, allocations: (await this.linesOf(r.id)).map((l: any) => ({ warehouseId: l.warehouse_id, sku: l.sku, quantity: l.quantity })) };
		},

		linesOf(this: Svc, reservationId: string, t?: Transaction): Promise<any[]> {
			return this.models.Line.findAll({ where: { reservation_id: reservationId }, order: [["sku", "ASC"], ["warehouse_id", "ASC"]], transaction: t, raw: true });
		},

		/** Releases what the order holds: HELD stock becomes available again, COMMITTED stock goes back on the shelf. */
		async releaseOrder(this: Svc, orderId: string) {
			faultPoint("warehouse.release");
			const reservations: any[] = await this.models.Reservation.findAll({ where: { order_id: orderId, status: { [Op.in]: ["HELD", "COMMITTED"] } }, raw: true });
			let released = 0;
			for (const r of reservations) if (await this.releaseReservation(r, "RELEASED")) released++;
			return { released };
		},

		/** Ends one reservation (conditional on the status it was read in, so twice is once). */
		async releaseReservation(this: Svc, r: any, to: "RELEASED" | "EXPIRED"): Promise<boolean> {
			return this.transaction(async (t: Transaction) => {
				const [n] = await this.models.Reservation.update({ status: to }, { where: { id: r.id, status: r.status }, transaction: t });
				if (!n) return false;
				for (const l of await this.linesOf(r.id, t)) {
					if (r.status === "HELD") {
						await this.changeStock(t, l, { reserved: -l.quantity }, to === "EXPIRED" ? "EXPIRE" : "RELEASE", r.id);
					} else {
						await this.changeStock(t, l, { onHand: l.quantity }, "RETURN", r.id);
					}
				}
				return true;
			});
		},

		async commitOrder(this: Svc, orderId: string) {
			const r: any = await this.models.Reservation.findOne({ where: { order_id: orderId, status: { [Op.in]: ["HELD", "COMMITTED"] } }, raw: true });
			if (!r) throw new ConflictError("The order holds no reservation (released or expired)", "NO_RESERVATION");
			if (r.status === "COMMITTED") return { committed: true };
			await this.transaction(async (t: Transaction) => {
				const [n] = await this.models.Reservation.update({ status: "COMMITTED" }, { where: { id: r.id, status: "HELD" }, transaction: t });
				if (!n) {
					// Committed meanwhile under another key is the same outcome; released or expired is not.
					const now: any = await this.models.Reservation.findByPk(r.id, { transaction: t, raw: true });
					if (now.status === "COMMITTED") return;
					throw new ConflictError("The reservation was released or expired meanwhile", "NO_RESERVATION");
				}
				for (const l of await this.linesOf(r.id, t)) await this.changeStock(t, l, { onHand: -l.quantity, reserved: -l.quantity }, "COMMIT", r.id);
			});
			return { committed: true };
		},

		/** One ledgered change of one stock row; the WHERE keeps onHand ≥ reserved ≥ 0 whatever runs concurrently. */
		async changeStock(this: Svc, t: Transaction, l: { sku: string; warehouse_id: string }, d: { onHand?: number; reserved?: number }, reason: string, reference: string) {
			const dOnHand = Math.trunc(d.onHand ?? 0);
			const dReserved = Math.trunc(d.reserved ?? 0);
			const [n] = await this.models.Stock.update(
				{ on_hand: this.sequelize.literal(`on_hand + ${dOnHand}`), reserved: this.sequelize.literal(`reserved + ${dReserved}`) },
				{ where: { sku: l.sku, warehouse_id: l.warehouse_id, [Op.and]: this.sequelize.literal(`reserved + ${dReserved} >= 0 AND on_hand + ${dOnHand} >= reserved + ${dReserved}`) }, transaction: t },
			);
			// Only a ledger that disagrees with the stock row gets here: refuse rather than corrupt it.
			if (!n) throw new Error(`Stock of ${l.sku} at ${l.warehouse_id} cannot take ${reason} (${dOnHand}/${dReserved}) for ${reference}`);
			await this.movement(t, l.sku, l.warehouse_id, dOnHand, dReserved, reason, reference);
			await this.stockChanged(t, l.sku, l.warehouse_id);
		},

		async movement(this: Svc, t: Transaction, sku: string, warehouseId: string, dOnHand: number, dReserved: number, reason: string, reference: string | null) {
			await this.models.Movement.create({ sku, warehouse_id: warehouseId, delta_on_hand: dOnHand, delta_reserved: dReserved, reason, reference, created_at: new Date() }, { transaction: t });
		},

		async stockChanged(this: Svc, t: Transaction, sku: string, warehouseId: string) {
			const rows: any[] = await this.sequelize.query("SELECT s.warehouse_id, s.on_hand, s.reserved, w.active FROM stock s LEFT JOIN warehouses w ON w.id = s.warehouse_id WHERE s.sku = :sku", { replacements: { sku }, transaction: t, type: QueryTypes.SELECT });
			const here = rows.find(r => r.warehouse_id === warehouseId);
			await this.recordEvent(t, "warehouse.stock.changed", { sku, warehouseId, onHand: here?.on_hand ?? 0, reserved: here?.reserved ?? 0, totalAvailable: totalAvailable(rows) });
		},

		/** Ids of the warehouses that take new reservations, as a subquery (lib/inventory/warehouses). */
		activeWarehouseIds(this: Svc) {
			return this.sequelize.literal("(SELECT id FROM warehouses WHERE active)");
		},

		async availabilityOf(this: Svc, skus: string[]) {
			// Only what can still be reserved: stock in an inactive warehouse cannot be bought.
			const rows: any[] = skus.length ? await this.models.Stock.findAll({ where: { sku: { [Op.in]: skus }, warehouse_id: { [Op.in]: this.activeWarehouseIds() } }, raw: true }) : [];
			const out: Record<string, { inStock: boolean; quantity: number }> = {};
			for (const sku of skus) {
				const quantity = rows.filter(r => r.sku === sku).reduce((n, r) => n + r.on_hand - r.reserved, 0);
				out[sku] = { inStock: quantity > 0, quantity };
			}
			return out;
		},

		stockView(sku: string, rows: any[]) {
			return { sku, warehouses: rows.map(r => ({ warehouseId: r.warehouse_id, onHand: r.on_hand, reserved: r.reserved, available: r.on_hand - r.reserved })) };
		},

		/** Releases HELD reservations past their expiry (a saga that died, or a checkout abandoned mid-way). */
		async sweepExpired(this: Svc) {
			const expired: any[] = await this.models.Reservation.findAll({ where: { status: "HELD", expires_at: { [Op.lt]: new Date() } }, order: [["expires_at", "ASC"]], limit: 100, raw: true });
			let n = 0;
			for (const r of expired) {
				if (!(await this.releaseReservation(r, "EXPIRED"))) continue;
				n++;
				this.logger.info("Expired reservation released", { orderId: r.order_id, reservationId: r.id });
			}
			return n;
		},

		async seedDemoStock(this: Svc) {
			let rows = 0;
			await this.transaction(async (t: Transaction) => {
				for (const w of DEMO_WAREHOUSES) {
					const now = new Date();
					const row = { id: w.id, name: w.name, ...warehouseColumns(w.address), active: true, created_at: now, updated_at: now };
					const [, created] = await this.models.Warehouse.findOrCreate({ where: { id: w.id }, defaults: row, transaction: t });
					if (created) await this.recordEvent(t, "warehouse.warehouse.created", warehouseSnapshot(row));
				}
				for (const [i, p] of DEMO_PRODUCTS.entries()) {
					// Deterministic levels; every 17th product is sold out for realism.
					const levels: [string, number][] = i % 17 === 16 ? [["wh-east", 0], ["wh-west", 0]] : [["wh-east", 20 + ((i * 7) % 30)], ["wh-west", 10 + ((i * 5) % 25)]];
					for (const [w, qty] of levels) {
						const [, created] = await this.models.Stock.findOrCreate({ where: { sku: p.sku, warehouse_id: w }, defaults: { sku: p.sku, warehouse_id: w, on_hand: qty, reserved: 0 }, transaction: t });
						if (!created) continue;
						rows++;
						if (qty) await this.movement(t, p.sku, w, qty, 0, "RECEIVE", "demo-seed");
						await this.stockChanged(t, p.sku, w);
					}
				}
			});
			return { stockRows: rows };
		},
	},

	async started(this: Svc) {
		if (config().SEED_DEMO && (await this.models.Stock.count()) === 0) {
			const r = await this.seedDemoStock();
			this.logger.info(`Demo stock loaded: ${r.stockRows} rows`);
		}
		this.sweeper = setInterval(() => {
			this.sweepExpired().catch((err: Error) => this.logger.warn("Reservation sweep failed; will retry", err.message));
		}, this.settings.sweepIntervalMs);
		this.sweeper.unref();
	},

	stopped(this: Svc) {
		clearInterval(this.sweeper);
	},
};

export default WarehouseService;
