/**
 * Shipping: rate quotes (by weight and destination), shipments with tracking numbers, and their
 * tracking events (a delivery arrives as fulfillment.fulfillment.delivered).
 */
import { randomBytes, randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, type Transaction } from "sequelize";
import { config } from "../../config";
import { NotFoundError } from "../../lib/errors";
import type { DomainEvent } from "../../lib/events";
import { shippingRates } from "../../lib/shipping/rates";
import { AccessMixin, type Meta, callerOf } from "../../mixins/access.mixin";
import { ConsumerMixin, inboxMigrations } from "../../mixins/consumer.mixin";
import { ADDRESS_RULES } from "../customer/customers.service";
import { DbMixin, type DbMethods, type Migration } from "../../mixins/db.mixin";
import { IdempotencyMixin, type IdempotencyMethods, idempotencyMigrations } from "../../mixins/idempotency.mixin";

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
	...idempotencyMigrations,
	...inboxMigrations,
];

type Svc = Service & DbMethods & IdempotencyMethods & { [k: string]: any };
const address = { type: "object", strict: true, props: { ...ADDRESS_RULES, name: "string|max:100|optional" } };

const ShippingService: ServiceSchema<any, any, any, Svc> = {
	name: "shipping",
	mixins: [
		DbMixin({
			name: "shipping",
			migrations,
			models: s => ({
				Shipment: s.define("Shipment", { id: { type: DataTypes.STRING(36), primaryKey: true }, tracking_number: DataTypes.STRING(20), fulfillment_id: DataTypes.STRING(36), order_id: DataTypes.STRING(36), method: DataTypes.STRING(20), status: DataTypes.STRING(20), created_at: DataTypes.DATE(3) }, { tableName: "shipments", timestamps: false }),
				TrackingEvent: s.define("TrackingEvent", { id: { type: DataTypes.STRING(36), primaryKey: true }, shipment_id: DataTypes.STRING(36), status: DataTypes.STRING(20), at: DataTypes.DATE(3) }, { tableName: "tracking_events", timestamps: false }),
			}),
		}),
		IdempotencyMixin,
		ConsumerMixin,
		AccessMixin,
	],

	actions: {
		quote: {
			params: { address, lines: { type: "array", max: 100, items: { type: "object", props: { productId: "string|max:36", quantity: "number|integer|min:1", weightGrams: "number|integer|min:0" } } }, subtotal: "object" },
			handler(this: Svc, ctx: Context<{ address: { country: string }; lines: { quantity: number; weightGrams: number }[]; subtotal: { amount: number } }>) {
				const weight = ctx.params.lines.reduce((n, l) => n + l.quantity * l.weightGrams, 0);
				return { items: shippingRates(weight, ctx.params.address.country, ctx.params.subtotal.amount, config().FREE_SHIPPING_THRESHOLD_CENTS) };
			},
		},

		rates: {
			auth: "customer",
			params: { address, items: { type: "array", optional: true, min: 1, max: 100, items: { type: "object", strict: true, props: { productId: "string|max:36", quantity: "number|integer|min:1|max:99" } } } },
			async handler(this: Svc, ctx: Context<{ address: { country: string }; items?: { productId: string; quantity: number }[] }, Meta>) {
				const items = ctx.params.items ?? ((await ctx.call("cart.getForCheckout", { customerId: callerOf(ctx).id })) as any).items;
				const products: any[] = items.length ? await ctx.call("catalog.getMany", { ids: items.map((i: any) => i.productId) }) : [];
				const lines = items.map((i: any) => {
					const p = products.find(x => x.id === i.productId && x.status === "active");
					if (!p) throw new NotFoundError(`Product ${i.productId}`, "PRODUCT_NOT_FOUND");
					return { productId: p.id, quantity: i.quantity, weightGrams: p.weightGrams, amount: p.price.amount * i.quantity };
				});
				const subtotal = lines.reduce((n: number, l: any) => n + l.amount, 0);
				const weight = lines.reduce((n: number, l: any) => n + l.quantity * l.weightGrams, 0);
				return { items: shippingRates(weight, ctx.params.address.country, subtotal, config().FREE_SHIPPING_THRESHOLD_CENTS) };
			},
		},

		createShipment: {
			params: { fulfillmentId: "string|max:36", orderId: "string|max:36", method: "string|max:20", idempotencyKey: "string|min:1|max:255" },
			handler(this: Svc, ctx: Context<{ fulfillmentId: string; orderId: string; method: string; idempotencyKey: string }>) {
				return this.once("createShipment", ctx.params.idempotencyKey, ctx.params, async () => {
					const shipment = { id: randomUUID(), tracking_number: `MC${randomBytes(6).toString("hex").toUpperCase()}`, fulfillment_id: ctx.params.fulfillmentId, order_id: ctx.params.orderId, method: ctx.params.method, status: "IN_TRANSIT", created_at: new Date() };
					await this.transaction(async (t: Transaction) => {
						await this.models.Shipment.create(shipment, { transaction: t });
						await this.models.TrackingEvent.create({ id: randomUUID(), shipment_id: shipment.id, status: "IN_TRANSIT", at: shipment.created_at }, { transaction: t });
					});
					return { trackingNumber: shipment.tracking_number };
				}, { waitMs: 5000 });
			},
		},

		track: {
			auth: "public",
			params: { trackingNumber: "string|max:20" },
			async handler(this: Svc, ctx: Context<{ trackingNumber: string }>) {
				const s: any = await this.models.Shipment.findOne({ where: { tracking_number: ctx.params.trackingNumber }, raw: true });
				if (!s) throw new NotFoundError("Shipment", "SHIPMENT_NOT_FOUND");
				const events: any[] = await this.models.TrackingEvent.findAll({ where: { shipment_id: s.id }, order: [["at", "ASC"]], raw: true });
				return { trackingNumber: s.tracking_number, status: s.status, events: events.map(e => ({ status: e.status, at: new Date(e.at).toISOString() })) };
			},
		},
	},

	subscriptions: {
		async "fulfillment.fulfillment.delivered"(this: Svc, e: DomainEvent<"fulfillment.fulfillment.delivered">, t: Transaction) {
			const s: any = await this.models.Shipment.findOne({ where: { fulfillment_id: e.fulfillmentId }, transaction: t, raw: true });
			if (!s) return;
			await this.models.Shipment.update({ status: "DELIVERED" }, { where: { id: s.id }, transaction: t });
			await this.models.TrackingEvent.create({ id: randomUUID(), shipment_id: s.id, status: "DELIVERED", at: new Date(e.occurredAt) }, { transaction: t });
		},
	},
};

export default ShippingService;
