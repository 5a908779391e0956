/**
 * Warehouse: stock per (sku, warehouse), reservations that take all lines or none, a ledger of
 * stock movements, and expiry of forgotten reservations.
 *
 * The database keeps invariant 1 itself (CHECK on_hand >= reserved >= 0), so no write can
 * oversell whatever runs concurrently. The saga's commands (reserve, commit) are one statement
 * each on PostgreSQL — stock rows locked in (sku, warehouse) order, updated, ledgered, the events
 * and the idempotency key's record written — so a stock row is held for one round trip. Release
 * (a compensation, and cancellation) fences the reserve step's key: a reserve arriving after it
 * takes no effect. One reservation per order. Only active warehouses take new reservations.
 * Managing warehouses and bulk stock live in warehouse-admin.mixin.ts.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, Op, QueryTypes, type Transaction } from "sequelize";
import { config } from "../../config";
import { DEMO_PRODUCTS } from "../../lib/catalog/demo-data";
import { SKU_RULE } from "../../lib/catalog/product";
import { ConflictError, DependencyUnavailableError, NotFoundError } from "../../lib/errors";
import { faultPoint } from "../../lib/faults";
import { type Allocation, allocate, bySkuThenWarehouse, mergeLines } from "../../lib/inventory/allocation";
import { DEMO_WAREHOUSES, totalAvailable, warehouseColumns, warehouseSnapshot } from "../../lib/inventory/warehouses";
import { type Params, type Part, type Runner, recording, violationOf } from "../../lib/db/sql";
import { AccessMixin } from "../../mixins/access.mixin";
import { DbMixin, type DbMethods, type Migration } from "../../mixins/db.mixin";
import { type Command, IdempotencyMixin, type IdempotencyMethods, idempotencyMigrations } from "../../mixins/idempotency.mixin";
import { OutboxMixin, type OutboxMethods, outboxMigrations } from "../../mixins/outbox.mixin";
import { WarehouseAdminMixin } from "./warehouse-admin.mixin";
import { DEFAULT_CACHE_TTL_S } from "../../lib/cache";
import { COMMAND_TIMEOUT_MS } from "../../lib/command-timeouts";

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
	{
		name: "i7-004-stock-check-one-reservation-per-order",
		async up(qi) {
			const q = (sql: string) => qi.sequelize.query(sql);
			// Invariant 1 by the database: no write, however it races, leaves reserved < 0 or above on hand.
			if (qi.sequelize.getDialect() === "postgres") {
				await q("ALTER TABLE stock ADD CONSTRAINT stock_levels CHECK (reserved >= 0 AND on_hand >= reserved)");
			} else {
				// SQLite adds a CHECK only by rebuilding the table.
				await q("CREATE TABLE stock_checked (sku VARCHAR(64) NOT NULL, warehouse_id VARCHAR(36) NOT NULL, on_hand INTEGER NOT NULL, reserved INTEGER NOT NULL, PRIMARY KEY (sku, warehouse_id), CONSTRAINT stock_levels CHECK (reserved >= 0 AND on_hand >= reserved))");
				await q("INSERT INTO stock_checked (sku, warehouse_id, on_hand, reserved) SELECT sku, warehouse_id, on_hand, reserved FROM stock");
				await q("DROP TABLE stock");
				await q("ALTER TABLE stock_checked RENAME TO stock");
			}
			// The key table is the one idempotency mechanism; a reservation is the order's, once.
			await qi.removeIndex("reservations", "reservations_idempotency_key");
			await q("ALTER TABLE reservations DROP COLUMN idempotency_key");
			await qi.removeIndex("reservations", "reservations_order_id");
			await qi.addIndex("reservations", ["order_id"], { unique: true, name: "reservations_one_per_order" });
		},
	},
];

type Svc = Service & DbMethods & OutboxMethods & IdempotencyMethods & { [k: string]: any };
type Line = { sku: string; quantity: number };
const key = "string|min:1|max:255";
/** A reserve whose plan was overtaken by a concurrent one is planned again, at most this often. */
const PLAN_ATTEMPTS = 5;
/** How a stock row's availability changed, for its warehouse.stock.changed event. */
interface StockChange {
	sku: string;
	/** null: the write changed one row of the sku, whichever warehouse it chose. */
	warehouseId: string | null;
	/** Change of the sku's total availability (all warehouses) that this write makes. */
	skuDelta: number;
}
const orderId = "string|min:1|max:36";
/** The warehouses that take new reservations and count towards availability (SQL, both dialects). */
const ACTIVE_WAREHOUSES = "SELECT id FROM warehouses WHERE active";

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
				Reservation: s.define("Reservation", { id: { type: DataTypes.STRING(36), primaryKey: true }, order_id: DataTypes.STRING(36), status: DataTypes.STRING(16), expires_at: DataTypes.DATE(3), created_at: DataTypes.DATE(3) }, { tableName: "reservations", timestamps: false }),
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
		/** Saga step 2: all lines or none (409 OUT_OF_STOCK, which takes no effect); the reservation expires after `reservationTtlMs`. */
		reserve: {
			timeout: COMMAND_TIMEOUT_MS["warehouse.reserve"],
			params: { orderId, lines: { type: "array", min: 1, max: 100, items: { type: "object", strict: true, props: { sku: "string|min:1|max:64", quantity: "number|integer|min:1|max:1000" } } }, idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; lines: Line[]; idempotencyKey: string }>) {
				const { idempotencyKey, ...request } = ctx.params;
				return this.reserve({ scope: "warehouse", name: "reserve", key: idempotencyKey, request: { op: "reserve", ...request } });
			},
		},

		/** Compensation of reserve, and cancellation: held stock becomes available again, committed stock goes back on the shelf. */
		release: {
			timeout: COMMAND_TIMEOUT_MS["warehouse.release"],
			params: { orderId, idempotencyKey: key, stepKey: "string|min:1|max:255|optional" },
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string; stepKey?: string }>) {
				const { idempotencyKey, stepKey, ...request } = ctx.params;
				return this.commandTx(
					{ scope: "warehouse", name: "release", key: idempotencyKey, request: { op: "release", ...request } },
					async (r: Runner) => {
						faultPoint("warehouse.release");
						const held = await r.query<{ id: string; status: string }>(
							`SELECT id, status FROM reservations WHERE order_id = $1 AND status IN ('HELD', 'COMMITTED')${r.dialect === "postgres" ? " FOR UPDATE" : ""}`,
							[request.orderId],
						);
						let released = 0;
						for (const res of held) if (await this.endReservation(r, res, "RELEASED")) released++;
						return { answer: { released } };
					},
					{ fence: stepKey ? { scope: "warehouse", key: stepKey } : undefined },
				);
			},
		},

		/** Saga step 5: held stock leaves the shelf (onHand and reserved both drop). 409 NO_RESERVATION once released or expired. */
		commit: {
			timeout: COMMAND_TIMEOUT_MS["warehouse.commit"],
			params: { orderId, idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string }>) {
				const { idempotencyKey, ...request } = ctx.params;
				return this.command({ scope: "warehouse", name: "commit", key: idempotencyKey, request: { op: "commit", ...request } }, async (p: Params) => this.commitPlan(p, request.orderId));
			},
		},

		availability: {
			// Cached (lib/cache.ts): cleaned by warehouse.stock.changed and warehouse.warehouse.*.
			cache: { ttl: DEFAULT_CACHE_TTL_S },
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
				// Any case of the SKU finds its stock (warehouse-admin.mixin.ts storedSku).
				const sku = await this.storedSku(ctx.params.sku);
				const rows: any[] = await this.models.Stock.findAll({ where: { sku }, order: [["warehouse_id", "ASC"]], raw: true });
				if (!rows.length) throw new NotFoundError("Stock for this SKU", "SKU_NOT_FOUND");
				return this.stockView(sku, rows);
			},
		},

		setOnHand: {
			auth: "admin",
			roles: ["ops"],
			params: { sku: SKU_RULE, warehouseId: "string|min:1|max:36", onHand: "number|integer|min:0|max:10000000" },
			async handler(this: Svc, ctx: Context<{ sku: string; warehouseId: string; onHand: number }>) {
				const { warehouseId, onHand } = ctx.params;
				if (!(await this.models.Warehouse.findByPk(warehouseId))) throw new NotFoundError("Warehouse", "WAREHOUSE_NOT_FOUND");
				// The stock of this SKU in whatever case it is kept (warehouse-admin.mixin.ts storedSku), not a twin line.
				const sku: string = await this.storedSku(ctx.params.sku);
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
		/** Reads the levels, allocates, writes; planned again when a concurrent reservation took the stock first. */
		async reserve(this: Svc, cmd: Command & { request: { orderId: string; lines: Line[] } }) {
			const { orderId: order, lines } = cmd.request;
			for (let attempt = 1; ; attempt++) {
				try {
					// PostgreSQL: first the one-statement reservation from a single warehouse (the common case);
					// when no warehouse holds every line, the levels it locked plan the general write.
					let levels: any[] | undefined;
					let optimistic = this.sql.dialect === "postgres";
					return await this.command(cmd, (p: Params) => {
						if (!optimistic) return this.reservePlan(p, order, lines, levels);
						optimistic = false;
						return this.reserveSinglePlan(p, order, lines, (rows: Record<string, any[]>) => (levels = (rows.lk ?? []).filter((r: any) => r.active)));
					});
				} catch (err) {
					const v = violationOf(err);
					// The CHECK refused the write: the levels read were overtaken. Plan again from fresh ones.
					if (v?.kind === "check" && attempt < PLAN_ATTEMPTS) continue;
					if (v?.kind === "check") throw new DependencyUnavailableError("Stock is contended; try again", "STOCK_CONTENDED");
					// The order holds a reservation already (another key): a second one must not take effect.
					if (v?.kind === "unique" && v.target === "reservations") throw new ConflictError("The order already has a reservation", "RESERVATION_EXISTS");
					throw err;
				}
			}
		},

		/**
		 * PostgreSQL: the whole order from ONE warehouse in one statement — the first active warehouse
		 * (by id) holding every line, as lib/inventory/allocation.ts picks it, chosen by the statement
		 * from the rows it locked. The answer (which warehouse) is built by the statement too
		 * (`answerSql`). When none holds every line the statement writes nothing and `skipped` gets
		 * the locked levels (with `active`) for the general plan.
		 */
		async reserveSinglePlan(this: Svc, p: Params, order: string, lines: Line[], skipped: (rows: Record<string, any[]>) => void) {
			const wanted = mergeLines(lines).sort((a, b) => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0));
			const skus = wanted.map(w => w.sku);
			const want = wanted.map(w => `SELECT ${p.text(w.sku)} AS sku, ${p.int(w.quantity)} AS quantity`).join(" UNION ALL ");
			const reservationId = randomUUID();
			const rid = p.text(reservationId);
			const now = new Date();
			// "C": the byte order of the text, which is how JavaScript sorts these ids (allocation.ts).
			const answer = `json_build_object('reservationId', ${rid}, 'allocations', (SELECT json_agg(json_build_object('warehouseId', one.warehouse_id, 'sku', w.sku, 'quantity', w.quantity) ORDER BY w.sku COLLATE "C") FROM one, (${want}) w))`;
			const parts: Part[] = [
				// Every row of the skus, locked in one order (no deadlock between reservations) for one round trip.
				{ name: "lk", sql: `SELECT sku, warehouse_id, on_hand, reserved, warehouse_id IN (${ACTIVE_WAREHOUSES}) AS active FROM stock WHERE sku IN (${skus.map(k => p.text(k)).join(", ")}) ORDER BY sku, warehouse_id FOR UPDATE` },
				{
					name: "one",
					sql: `SELECT lk.warehouse_id FROM lk JOIN (${want}) w ON w.sku = lk.sku WHERE lk.active AND lk.on_hand - lk.reserved >= w.quantity GROUP BY lk.warehouse_id HAVING COUNT(*) = ${p.int(skus.length)} ORDER BY lk.warehouse_id COLLATE "C" LIMIT 1`,
				},
				{ name: "res", sql: `INSERT INTO reservations (id, order_id, status, expires_at, created_at) SELECT ${rid}, ${p.text(order)}, 'HELD', ${p.ts(new Date(now.getTime() + this.settings.reservationTtlMs))}, ${p.ts(now)} WHERE {guard} RETURNING id`, requires: ["one"] },
				{
					name: "upd",
					sql: `UPDATE stock s SET reserved = s.reserved + w.quantity FROM one, (${want}) w WHERE s.sku = w.sku AND s.warehouse_id = one.warehouse_id AND {guard} RETURNING s.sku, s.warehouse_id, s.on_hand, s.reserved`,
					requires: ["res"],
				},
				{ name: "lines", sql: `INSERT INTO reservation_lines (reservation_id, sku, warehouse_id, quantity) SELECT ${rid}, w.sku, one.warehouse_id, w.quantity FROM (${want}) w, one WHERE {guard} RETURNING sku`, requires: ["upd"] },
				{ name: "mv", sql: `INSERT INTO stock_movements (sku, warehouse_id, delta_on_hand, delta_reserved, reason, reference, created_at) SELECT w.sku, one.warehouse_id, 0, w.quantity, 'RESERVE', ${rid}, ${p.ts(now)} FROM (${want}) w, one WHERE {guard} RETURNING id`, requires: ["upd"] },
				// One changed row per sku: the event joins the written row by sku alone.
				this.stockEventsPart(p, wanted.map(w => ({ sku: w.sku, warehouseId: null, skuDelta: -w.quantity })), "written", ["upd"]),
			];
			return { parts, outcome: { answer: null as unknown as { reservationId: string; allocations: Allocation[] } }, answerSql: answer, requires: ["upd"], skipped };
		},

		/** The general reservation: levels read (or given: locked by the single-warehouse attempt), allocated here, written in one statement. */
		async reservePlan(this: Svc, p: Params, order: string, lines: Line[], levels?: any[]) {
			const skus = [...new Set(lines.map(l => l.sku))].sort();
			// Inactive warehouses take no new reservations (API.md); what they hold already stays reserved.
			const rows = levels ?? (await this.sql.select<any>(`SELECT sku, warehouse_id, on_hand, reserved FROM stock WHERE sku IN (${skus.map((_, i) => `$${i + 1}`).join(", ")}) AND warehouse_id IN (${ACTIVE_WAREHOUSES})`, skus));
			const plan = allocate(lines, rows.map(r => ({ sku: r.sku, warehouseId: r.warehouse_id, available: Number(r.on_hand) - Number(r.reserved) })));
			if (!plan.ok) throw new ConflictError("Not enough stock", "OUT_OF_STOCK", plan.short);
			const allocations = [...plan.allocations].sort(bySkuThenWarehouse);
			const reservationId = randomUUID();
			const now = new Date();
			const taken = new Map<string, number>();
			for (const a of allocations) taken.set(a.sku, (taken.get(a.sku) ?? 0) + a.quantity);
			const alloc = allocations.map(a => `SELECT ${p.text(a.sku)} AS sku, ${p.text(a.warehouseId)} AS warehouse_id, ${p.int(a.quantity)} AS quantity`).join(" UNION ALL ");
			const rid = p.text(reservationId);
			const pg = this.sql.dialect === "postgres";
			const parts: Part[] = [];
			// Every row of the skus, locked in one order (no deadlock between reservations) for one round trip.
			if (pg) parts.push({ name: "lk", sql: `SELECT sku, warehouse_id, on_hand, reserved FROM stock WHERE sku IN (${skus.map(k => p.text(k)).join(", ")}) ORDER BY sku, warehouse_id FOR UPDATE` });
			parts.push(
				{ name: "res", sql: `INSERT INTO reservations (id, order_id, status, expires_at, created_at) VALUES (${rid}, ${p.text(order)}, 'HELD', ${p.ts(new Date(now.getTime() + this.settings.reservationTtlMs))}, ${p.ts(now)}) RETURNING id` },
				{
					name: "upd",
					// No availability condition here: the CHECK constraint refuses an oversell, and the whole write with it.
					sql: pg
						? `UPDATE stock s SET reserved = s.reserved + a.quantity FROM lk JOIN (${alloc}) a ON a.sku = lk.sku AND a.warehouse_id = lk.warehouse_id WHERE s.sku = lk.sku AND s.warehouse_id = lk.warehouse_id AND {guard} RETURNING s.sku, s.warehouse_id, s.on_hand, s.reserved`
						: `UPDATE stock SET reserved = reserved + a.quantity FROM (${alloc}) a WHERE stock.sku = a.sku AND stock.warehouse_id = a.warehouse_id AND {guard} RETURNING 1`,
					requires: ["res"],
				},
				{ name: "lines", sql: `INSERT INTO reservation_lines (reservation_id, sku, warehouse_id, quantity) SELECT ${rid}, a.sku, a.warehouse_id, a.quantity FROM (${alloc}) a WHERE {guard} RETURNING sku`, requires: ["upd"] },
				{ name: "mv", sql: `INSERT INTO stock_movements (sku, warehouse_id, delta_on_hand, delta_reserved, reason, reference, created_at) SELECT a.sku, a.warehouse_id, 0, a.quantity, 'RESERVE', ${rid}, ${p.ts(now)} FROM (${alloc}) a WHERE {guard} RETURNING id`, requires: ["upd"] },
				this.stockEventsPart(p, allocations.map(a => ({ sku: a.sku, warehouseId: a.warehouseId, skuDelta: -taken.get(a.sku)! })), pg ? "written" : "table", ["upd"]),
			);
			return { parts, outcome: { answer: { reservationId, allocations } }, requires: ["upd"] };
		},

		/** Commit: the reservation, the stock (rows locked in order), the ledger and the key — one statement on PostgreSQL. */
		async commitPlan(this: Svc, p: Params, order: string) {
			const o = p.text(order);
			const now = p.ts(new Date());
			const pg = this.sql.dialect === "postgres";
			// On SQLite the parts run one after another: the reservation committed by `cm` is the order's one COMMITTED row.
			const reservation = pg ? "(SELECT id FROM cm)" : `(SELECT id FROM reservations WHERE order_id = ${o} AND status = 'COMMITTED')`;
			const committed = `EXISTS (SELECT 1 FROM reservations WHERE order_id = ${o} AND status = 'COMMITTED')`;
			const parts: Part[] = [{ name: "cm", sql: `UPDATE reservations SET status = 'COMMITTED' WHERE order_id = ${o} AND status = 'HELD' RETURNING id` }];
			if (pg) {
				parts.push(
					{ name: "lk", sql: `SELECT s.sku, s.warehouse_id FROM stock s JOIN reservation_lines l ON l.sku = s.sku AND l.warehouse_id = s.warehouse_id WHERE l.reservation_id = ${reservation} ORDER BY s.sku, s.warehouse_id FOR UPDATE OF s` },
					{ name: "upd", sql: `UPDATE stock s SET on_hand = s.on_hand - l.quantity, reserved = s.reserved - l.quantity FROM lk JOIN reservation_lines l ON l.sku = lk.sku AND l.warehouse_id = lk.warehouse_id WHERE l.reservation_id = ${reservation} AND s.sku = lk.sku AND s.warehouse_id = lk.warehouse_id AND {guard} RETURNING s.sku`, requires: ["cm"] },
				);
			} else {
				parts.push({ name: "upd", sql: `UPDATE stock SET on_hand = on_hand - l.quantity, reserved = reserved - l.quantity FROM reservation_lines l WHERE l.reservation_id = ${reservation} AND stock.sku = l.sku AND stock.warehouse_id = l.warehouse_id AND {guard} RETURNING 1`, requires: ["cm"] });
			}
			// Availability does not change (both drop by the same): no warehouse.stock.changed event.
			parts.push({ name: "mv", sql: `INSERT INTO stock_movements (sku, warehouse_id, delta_on_hand, delta_reserved, reason, reference, created_at) SELECT l.sku, l.warehouse_id, -l.quantity, -l.quantity, 'COMMIT', l.reservation_id, ${now} FROM reservation_lines l WHERE l.reservation_id = ${reservation} AND {guard} RETURNING id`, requires: ["cm"] });
			return {
				parts,
				outcome: { answer: { committed: true } },
				// Committed now, or before under another key (the same outcome); released or expired is not.
				keyWhen: pg ? `(EXISTS (SELECT 1 FROM cm) OR ${committed})` : committed,
				refused: () => new ConflictError("The order holds no reservation (released or expired)", "NO_RESERVATION"),
			};
		},

		/**
		 * Ends one reservation in the caller's transaction (conditional on the status it was read
		 * in, so twice is once): HELD stock becomes available again, COMMITTED stock returns to the shelf.
		 */
		async endReservation(this: Svc, r: Runner, res: { id: string; status: string }, to: "RELEASED" | "EXPIRED"): Promise<boolean> {
			const lines = await r.query<{ sku: string; warehouse_id: string; quantity: number }>("SELECT sku, warehouse_id, quantity FROM reservation_lines WHERE reservation_id = $1 ORDER BY sku, warehouse_id", [res.id]);
			const held = res.status === "HELD";
			const reason = held ? (to === "EXPIRED" ? "EXPIRE" : "RELEASE") : "RETURN";
			const p = this.sql.params();
			const rid = p.text(res.id);
			const pg = r.dialect === "postgres";
			const set = held ? "reserved = s.reserved - l.quantity" : "on_hand = s.on_hand + l.quantity";
			const parts: Part[] = [{ name: "rel", sql: `UPDATE reservations SET status = ${p.text(to)} WHERE id = ${rid} AND status = ${p.text(res.status)} RETURNING id` }];
			if (pg) {
				const skus = [...new Set(lines.map(l => l.sku))];
				parts.push(
					{ name: "lk", sql: `SELECT sku, warehouse_id FROM stock WHERE sku IN (${skus.map(k => p.text(k)).join(", ") || "NULL"}) ORDER BY sku, warehouse_id FOR UPDATE` },
					{ name: "upd", sql: `UPDATE stock s SET ${set} FROM lk JOIN reservation_lines l ON l.sku = lk.sku AND l.warehouse_id = lk.warehouse_id WHERE l.reservation_id = ${rid} AND s.sku = lk.sku AND s.warehouse_id = lk.warehouse_id AND {guard} RETURNING s.sku`, requires: ["rel"] },
				);
			} else {
				parts.push({ name: "upd", sql: `UPDATE stock SET ${set.replaceAll("s.", "")} FROM reservation_lines l WHERE l.reservation_id = ${rid} AND stock.sku = l.sku AND stock.warehouse_id = l.warehouse_id AND {guard} RETURNING 1`, requires: ["rel"] });
			}
			parts.push({
				name: "mv",
				sql: `INSERT INTO stock_movements (sku, warehouse_id, delta_on_hand, delta_reserved, reason, reference, created_at) SELECT l.sku, l.warehouse_id, ${held ? "0, -l.quantity" : "l.quantity, 0"}, ${p.text(reason)}, ${rid}, ${p.ts(new Date())} FROM reservation_lines l WHERE l.reservation_id = ${rid} AND {guard} RETURNING id`,
				requires: ["rel"],
			});
			const rows = await r.write(parts, p);
			if (!rows.rel.length) return false;
			// Inside the transaction the rows read now are the updated ones, still locked: exact totals.
			const e = this.sql.params();
			await r.write([this.stockEventsPart(e, lines.map(l => ({ sku: l.sku, warehouseId: l.warehouse_id, skuDelta: 0 })), "table")], e);
			return true;
		},

		/**
		 * warehouse.stock.changed for each changed row, its payload computed by the write itself:
		 * from the rows the statement updated and the locked levels (`written`, PostgreSQL's one
		 * statement), or from the table as this transaction now sees it (`table`).
		 */
		stockEventsPart(this: Svc, p: Params, changes: StockChange[], from: "written" | "table", requires: string[] = []): Part {
			const occurredAt = p.text(new Date().toISOString());
			const ids = changes.map(c => `SELECT ${p.text(randomUUID())} AS id, ${p.text(c.sku)} AS sku, ${p.text(c.warehouseId)} AS warehouse_id, ${p.int(c.skuDelta)} AS delta`).join(" UNION ALL ");
			const pg = this.sql.dialect === "postgres";
			const obj = pg ? "json_build_object" : "json_object";
			// What can still be bought: stock in an inactive warehouse does not count.
			const total = `(SELECT COALESCE(SUM(t.on_hand - t.reserved), 0) FROM ${from === "written" ? "lk" : "stock"} t WHERE t.sku = s.sku AND t.warehouse_id IN (${ACTIVE_WAREHOUSES}))${from === "written" ? " + e.delta" : ""}`;
			const rows = from === "written" ? "upd" : "stock";
			const payload = `${obj}('sku', s.sku, 'warehouseId', s.warehouse_id, 'onHand', s.on_hand, 'reserved', s.reserved, 'totalAvailable', ${total}, 'eventId', e.id, 'occurredAt', ${occurredAt})`;
			const on = changes.every(c => c.warehouseId === null) ? "e.sku = s.sku" : "e.sku = s.sku AND e.warehouse_id = s.warehouse_id";
			return this.outboxSelectPart(p, "outbox_stock", "warehouse.stock.changed", `SELECT e.id, ${payload} AS payload FROM ${rows} s JOIN (${ids}) e ON ${on}`, requires);
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
			return this.sequelize.literal(`(${ACTIVE_WAREHOUSES})`);
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
			const p = this.sql.params();
			const expired = await this.sql.select<any>(`SELECT id, order_id, status FROM reservations WHERE status = 'HELD' AND expires_at < ${p.ts(new Date())} ORDER BY expires_at LIMIT 100`, p.values);
			let n = 0;
			for (const res of expired) {
				const ended = await this.sql.transaction(async (tx: Runner) => {
					const { runner, writes } = recording(tx);
					const done = await this.endReservation(runner, res, "EXPIRED");
					tx.transaction!.afterCommit(() => writes.forEach(rows => this.outboxWritten(rows)));
					return done;
				});
				if (!ended) continue;
				n++;
				this.logger.info("Expired reservation released", { orderId: res.order_id, reservationId: res.id });
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
