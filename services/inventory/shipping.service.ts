/**
 * Shipping: rate quotes (lib/shipping/rates, by weight, origin and destination), shipments with
 * tracking numbers, and their tracking events (a delivery arrives as fulfillment.fulfillment.delivered).
 * Origins are the countries of the active warehouses, a read model fed by warehouse.warehouse.*
 * events and kept in memory, so a quote costs no query and no call (orders asks for them now and
 * then through `origins`, to price a checkout the same way).
 * createShipment is an idempotent command (mixins/idempotency.mixin.ts): the shipment, its first
 * tracking event and the key's record in one statement on PostgreSQL; one shipment per fulfillment.
 */
import { randomUUID } from "node:crypto";
import { type Context, Errors, type Service, type ServiceSchema } from "moleculer";
import { DataTypes, Op, type Transaction } from "sequelize";
import { config } from "../../config";
import { serviceAppears } from "../../lib/await-service";
import { ConflictError, NotFoundError, UnprocessableError } from "../../lib/errors";
import { productsById } from "../../lib/catalog/products-by-id";
import type { DomainEvent } from "../../lib/events";
import { faultPoint } from "../../lib/faults";
import type { WarehouseSnapshot } from "../../lib/events";
import { originFor, shippingRates } from "../../lib/shipping/rates";
import { deliveryDecision, isTrackingNumber, newTrackingNumber } from "../../lib/shipping/tracking";
import { AccessMixin, type Meta, callerOf } from "../../mixins/access.mixin";
import { ConsumerMixin, inboxMigrations } from "../../mixins/consumer.mixin";
import { type Params, violationOf } from "../../lib/db/sql";
import { DbMixin, type DbMethods, type Migration } from "../../mixins/db.mixin";
import { IdempotencyMixin, type IdempotencyMethods, idempotencyMigrations } from "../../mixins/idempotency.mixin";
import { ADDRESS_RULES } from "../../lib/address";
import { checkDistinctLines } from "../../lib/orders/lines";

const migrations: Migration[] = [
	{
		name: "001-shipping",
		async up(qi, T) {
			await qi.createTable("shipments", {
				id: { type: T.STRING(36), primaryKey: true },
				tracking_number: { type: T.STRING(20), allowNull: false, unique: true },
				fulfillment_id: { type: T.STRING(36), allowNull: false },
				order_id: { type: T.STRING(36), allowNull: false },
				method: { type: T.STRING(20), allowNull: false },
				status: { type: T.STRING(20), allowNull: false },
				created_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("shipments", ["fulfillment_id"]);
			await qi.createTable("tracking_events", {
				id: { type: T.STRING(36), primaryKey: true },
				shipment_id: { type: T.STRING(36), allowNull: false },
				status: { type: T.STRING(20), allowNull: false },
				at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("tracking_events", ["shipment_id", "at"]);
		},
	},
	// Applied by earlier versions (which kept createShipment keys there); kept so history replays.
	...idempotencyMigrations,
	...inboxMigrations,
	{
		name: "002-shipment-keys",
		async up(qi, T) {
			// The key lives on the shipment itself, so a crash can never leave a shipment without it.
			await qi.addColumn("shipments", "idempotency_key", { type: T.STRING(255), allowNull: true });
			await qi.addColumn("shipments", "request_hash", { type: T.STRING(64), allowNull: true });
			await qi.addColumn("shipments", "address", { type: T.JSON, allowNull: true });
			await qi.addIndex("shipments", ["idempotency_key"], { unique: true, name: "shipments_idempotency_key" });
			await qi.addIndex("shipments", ["fulfillment_id"], { unique: true, name: "shipments_one_per_fulfillment" });
		},
	},
	{
		name: "i12-001-shipping-origins",
		async up(qi, T) {
			// Where parcels can leave from: one row per warehouse, from warehouse.warehouse.* events.
			await qi.createTable("shipping_origins", {
				warehouse_id: { type: T.STRING(64), primaryKey: true },
				country: { type: T.STRING(2), allowNull: true },
				active: { type: T.BOOLEAN, allowNull: false },
				source_updated_at: { type: T.STRING(32), allowNull: false },
			});
		},
	},
	{
		name: "i7-006-shipment-keys-go",
		async up(qi) {
			// Idempotency is the key table's alone (mixins/idempotency.mixin.ts).
			await qi.removeIndex("shipments", "shipments_idempotency_key");
			await qi.sequelize.query("ALTER TABLE shipments DROP COLUMN idempotency_key");
			await qi.sequelize.query("ALTER TABLE shipments DROP COLUMN request_hash");
		},
	},
];

type Svc = Service & DbMethods & IdempotencyMethods & { origins: string[]; originsTimer?: NodeJS.Timeout; [k: string]: any };

interface ShipmentParams {
	fulfillmentId: string;
	orderId: string;
	method: string;
	address: Record<string, unknown>;
	idempotencyKey: string;
}

/** What a client sends: an address exactly (unknown fields refused). */
const customerAddress = { type: "object", strict: true, props: { ...ADDRESS_RULES, name: "string|max:100|optional" } };
/** What services send: any stored address (it may carry an id or isDefault); the country is what prices it. */
const serviceAddress = { type: "object", props: { country: ADDRESS_RULES.country } };
/** A tracking-number collision (60 random bits) is all but impossible; a few tries make it harmless. */
const TRACKING_ATTEMPTS = 3;

const ShippingService: ServiceSchema<any, any, any, Svc> = {
	name: "shipping",
	mixins: [
		DbMixin({
			name: "shipping",
			migrations,
			models: s => ({
				Shipment: s.define(
					"Shipment",
					{
						id: { type: DataTypes.STRING(36), primaryKey: true },
						tracking_number: DataTypes.STRING(20),
						fulfillment_id: DataTypes.STRING(36),
						order_id: DataTypes.STRING(36),
						method: DataTypes.STRING(20),
						status: DataTypes.STRING(20),
						address: DataTypes.JSON,
						created_at: DataTypes.DATE(3),
					},
					{ tableName: "shipments", timestamps: false },
				),
				TrackingEvent: s.define(
					"TrackingEvent",
					{ id: { type: DataTypes.STRING(36), primaryKey: true }, shipment_id: DataTypes.STRING(36), status: DataTypes.STRING(20), at: DataTypes.DATE(3) },
					{ tableName: "tracking_events", timestamps: false },
				),
				Origin: s.define(
					"ShippingOrigin",
					{ warehouse_id: { type: DataTypes.STRING(64), primaryKey: true }, country: DataTypes.STRING(2), active: DataTypes.BOOLEAN, source_updated_at: DataTypes.STRING(32) },
					{ tableName: "shipping_origins", timestamps: false },
				),
			}),
		}),
		IdempotencyMixin,
		ConsumerMixin,
		AccessMixin,
	],

	actions: {
		/** Internal (orders prices a checkout itself): the countries parcels can leave from now, `{ origins: ["DE", "US"] }`. */
		origins: {
			handler(this: Svc) {
				return { origins: this.origins };
			},
		},

		/** Internal (orders): rates for lines whose weights the caller already has. */
		quote: {
			params: {
				address: serviceAddress,
				lines: { type: "array", max: 500, items: { type: "object", props: { productId: "string|min:1|max:64", quantity: "number|integer|min:1", weightGrams: "number|integer|min:0" } } },
				subtotal: { type: "object", props: { amount: "number|integer|min:0", currency: "string|length:3" } },
			},
			handler(this: Svc, ctx: Context<{ address: { country: string }; lines: { quantity: number; weightGrams: number }[]; subtotal: { amount: number } }>) {
				const weightGrams = ctx.params.lines.reduce((n, l) => n + l.quantity * l.weightGrams, 0);
				return { items: this.rates(ctx.params.address.country, weightGrams, ctx.params.subtotal.amount) };
			},
		},

		rates: {
			auth: "customer",
			params: {
				address: customerAddress,
				items: { type: "array", optional: true, min: 1, max: 100, items: { type: "object", strict: true, props: { productId: "string|min:1|max:64", quantity: "number|integer|min:1|max:99" } } },
			},
			async handler(this: Svc, ctx: Context<{ address: { country: string }; items?: { productId: string; quantity: number }[] }, Meta>) {
				const items: { productId: string; quantity: number }[] =
					ctx.params.items ?? ((await ctx.call("cart.getForCheckout", { customerId: callerOf(ctx).id }, { timeout: 3000 })) as any).items;
				// One line per product, as POST /orders takes them (lib/orders/lines.ts): two lines of 99 are not 198 of one.
				checkDistinctLines(ctx.params.items);
				if (!items.length) throw new UnprocessableError("Nothing to ship: the cart is empty", "EMPTY_CART", [{ field: "items", message: "nothing to ship" }]);
				const products: any[] = await productsById(ctx, items.map(i => i.productId), { timeout: 3000 });
				const active = new Map(products.filter(p => p.status === "active").map(p => [p.id, p]));
				let weightGrams = 0;
				let subtotal = 0;
				for (const i of items) {
					const p = active.get(i.productId);
					if (!p) throw new NotFoundError(`Product ${i.productId}`, "PRODUCT_NOT_FOUND");
					weightGrams += p.weightGrams * i.quantity;
					subtotal += p.price.amount * i.quantity;
				}
				return { items: this.rates(ctx.params.address.country, weightGrams, subtotal) };
			},
		},

		/** Internal (fulfillment.ship): one shipment per fulfillment, idempotent on the key. */
		createShipment: {
			params: {
				fulfillmentId: "string|min:1|max:36",
				orderId: "string|min:1|max:36",
				method: "string|min:1|max:20",
				address: serviceAddress,
				idempotencyKey: "string|min:1|max:255",
			},
			async handler(this: Svc, ctx: Context<ShipmentParams>) {
				const { idempotencyKey, ...request } = ctx.params;
				for (let attempt = 1; ; attempt++) {
					try {
						return await this.command({ scope: "shipping", name: "createShipment", key: idempotencyKey, request: { op: "createShipment", ...request } }, (p: Params) => this.shipmentPlan(p, request));
					} catch (err) {
						const v = violationOf(err);
						// Another key already shipped this fulfillment (a repeat of this key answered above).
						if (v?.kind === "unique" && v.detail.includes("fulfillment")) throw new ConflictError("The fulfillment already has a shipment", "SHIPMENT_EXISTS");
						// A tracking-number collision: draw another.
						if (v?.kind === "unique" && v.detail.includes("tracking_number") && attempt < TRACKING_ATTEMPTS) continue;
						throw err;
					}
				}
			},
		},

		/**
		 * Internal (fulfillment.ship's compensation): the shipment of a fulfillment that lost its ship
		 * (cancelled, or its payment refunded, while the shipment was being created) is CANCELLED, with a
		 * tracking event, so no public tracking number shows a parcel in transit that never left
		 * (adversary finding). Idempotent: a shipment already CANCELLED or DELIVERED is left as it is.
		 * Returns `{ cancelled: boolean }`.
		 */
		cancelShipment: {
			params: { fulfillmentId: "string|min:1|max:36" },
			async handler(this: Svc, ctx: Context<{ fulfillmentId: string }>) {
				return this.transaction(async (t: Transaction) => {
					const s: any = await this.models.Shipment.findOne({ where: { fulfillment_id: ctx.params.fulfillmentId }, transaction: t, raw: true });
					if (!s) return { cancelled: false };
					const [n] = await this.models.Shipment.update({ status: "CANCELLED" }, { where: { id: s.id, status: "IN_TRANSIT" }, transaction: t });
					if (n) await this.models.TrackingEvent.create({ id: randomUUID(), shipment_id: s.id, status: "CANCELLED", at: new Date() }, { transaction: t });
					return { cancelled: n > 0 };
				});
			},
		},

		track: {
			auth: "public",
			params: { trackingNumber: "string|min:1|max:40" },
			async handler(this: Svc, ctx: Context<{ trackingNumber: string }>) {
				const trackingNumber = ctx.params.trackingNumber.toUpperCase();
				const s: any = isTrackingNumber(trackingNumber) ? await this.models.Shipment.findOne({ where: { tracking_number: trackingNumber }, raw: true }) : null;
				if (!s) throw new NotFoundError("Shipment", "SHIPMENT_NOT_FOUND");
				const events: any[] = await this.models.TrackingEvent.findAll({ where: { shipment_id: s.id }, order: [["at", "ASC"]], raw: true });
				return { trackingNumber: s.tracking_number, status: s.status, events: events.map(e => ({ status: e.status, at: new Date(e.at).toISOString() })) };
			},
		},
	},

	subscriptions: {
		"warehouse.warehouse.created"(this: Svc, e: DomainEvent<"warehouse.warehouse.created">, t: Transaction) {
			return this.storeOrigin(e, t);
		},
		"warehouse.warehouse.updated"(this: Svc, e: DomainEvent<"warehouse.warehouse.updated">, t: Transaction) {
			return this.storeOrigin(e, t);
		},
		async "fulfillment.fulfillment.delivered"(this: Svc, e: DomainEvent<"fulfillment.fulfillment.delivered">, t: Transaction) {
			const s: any = await this.models.Shipment.findOne({ where: { fulfillment_id: e.fulfillmentId }, transaction: t, raw: true });
			// The shipment is created before the parcel ships; not there yet means its write is not visible yet: retry (issue 8), never acknowledge a no-op.
			if (deliveryDecision(s) === "retry") throw new Errors.MoleculerRetryableError(`No shipment yet for fulfillment ${e.fulfillmentId} (order ${e.orderId}); will retry`, 409, "SHIPMENT_NOT_READY", { fulfillmentId: e.fulfillmentId, orderId: e.orderId });
			const [n] = await this.models.Shipment.update({ status: "DELIVERED" }, { where: { id: s.id, status: { [Op.ne]: "DELIVERED" } }, transaction: t });
			if (n) await this.models.TrackingEvent.create({ id: randomUUID(), shipment_id: s.id, status: "DELIVERED", at: new Date(e.occurredAt) }, { transaction: t });
		},
	},

	methods: {
		rates(this: Svc, country: string, weightGrams: number, subtotal: number) {
			const origin = originFor(this.origins, country);
			return shippingRates({ weightGrams, origin, country, subtotal, freeShippingThreshold: config().FREE_SHIPPING_THRESHOLD_CENTS });
		},

		/** Keeps the newest snapshot of a warehouse; an older one arriving late changes nothing. */
		async storeOrigin(this: Svc, w: WarehouseSnapshot, t?: Transaction) {
			const existing: any = await this.models.Origin.findByPk(w.warehouseId, { transaction: t, raw: true, ...(t ? { lock: t.LOCK.UPDATE } : {}) });
			if (existing && existing.source_updated_at > w.updatedAt) return;
			await this.models.Origin.upsert({ warehouse_id: w.warehouseId, country: w.country, active: w.active, source_updated_at: w.updatedAt }, { transaction: t });
			if (t) t.afterCommit(() => this.loadOrigins());
		},

		/** The distinct countries of the active warehouses, into memory (replicas converge by polling the table). */
		async loadOrigins(this: Svc) {
			const rows: any[] = await this.models.Origin.findAll({ where: { active: true }, raw: true });
			this.origins = [...new Set(rows.map(r => r.country).filter(Boolean) as string[])].sort();
		},

		/** An empty read model in a cluster whose warehouses predate it fills itself from the warehouse service. */
		async fillOrigins(this: Svc) {
			if ((await this.models.Origin.count()) > 0) return;
			if (!(await serviceAppears(this.broker, "warehouse", 30_000, () => this.originsTimer === undefined))) return;
			const { items }: { items: WarehouseSnapshot[] } = await this.broker.call("warehouse.warehouseSnapshots", {}, { timeout: 10_000 });
			for (const w of items) await this.transaction((t: Transaction) => this.storeOrigin(w, t));
			if (items.length) this.logger.info(`Shipping origins loaded from the warehouse service: ${items.length} warehouses`);
		},

		shipmentPlan(this: Svc, p: Params, request: Omit<ShipmentParams, "idempotencyKey">) {
			faultPoint("shipping.createShipment");
			const now = p.ts(new Date());
			const id = p.text(randomUUID());
			const trackingNumber = newTrackingNumber();
			return {
				parts: [
					{
						name: "sh",
						sql: `INSERT INTO shipments (id, tracking_number, fulfillment_id, order_id, method, status, address, created_at) VALUES (${id}, ${p.text(trackingNumber)}, ${p.text(request.fulfillmentId)}, ${p.text(request.orderId)}, ${p.text(request.method)}, 'IN_TRANSIT', ${p.json(request.address)}, ${now}) RETURNING id`,
					},
					{ name: "te", sql: `INSERT INTO tracking_events (id, shipment_id, status, at) SELECT ${p.text(randomUUID())}, ${id}, 'IN_TRANSIT', ${now} WHERE {guard} RETURNING id`, requires: ["sh"] },
				],
				outcome: { answer: { trackingNumber } },
				requires: ["sh"],
			};
		},
	},

	async started(this: Svc) {
		this.origins = [];
		await this.loadOrigins();
		this.originsTimer = setInterval(() => {
			this.loadOrigins().catch((err: Error) => this.logger.warn("Shipping origins refresh failed; retrying", err.message));
		}, 5000);
		this.originsTimer.unref();
		this.fillOrigins().catch((err: Error) => this.logger.info(`Shipping origins not loaded from the warehouse service (${err.message}); events will bring them`));
	},

	stopped(this: Svc) {
		if (this.originsTimer) clearInterval(this.originsTimer);
		this.originsTimer = undefined;
	},
};

export default ShippingService;
