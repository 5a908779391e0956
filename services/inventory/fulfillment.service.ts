/**
 * Fulfillment: one per warehouse that holds an order's stock, moved through pick → pack → ship →
 * deliver by operators. Each move is a conditional update, so two operators cannot both make it.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, Op, type Transaction } from "sequelize";
import { clampPaging } from "../../lib/catalog/query";
import { ConflictError, NotFoundError } from "../../lib/errors";
import { type FulfillmentStatus, type FulfillmentVerb, transition } from "../../lib/fulfillment/state";
import { AccessMixin } from "../../mixins/access.mixin";
import { DbMixin, type DbMethods, type Migration, jsonColumn } from "../../mixins/db.mixin";
import { IdempotencyMixin, type IdempotencyMethods, idempotencyMigrations } from "../../mixins/idempotency.mixin";
import { OutboxMixin, type OutboxMethods, outboxMigrations } from "../../mixins/outbox.mixin";

const migrations: Migration[] = [
	{
		name: "001-fulfillments",
		async up(qi, T) {
			await qi.createTable("fulfillments", {
				id: { type: T.STRING(36), primaryKey: true },
				order_id: { type: T.STRING(36), allowNull: false },
				warehouse_id: { type: T.STRING(36), allowNull: false },
				status: { type: T.STRING(16), allowNull: false },
				items: { type: T.JSON, allowNull: false },
				shipping_address: { type: T.JSON, allowNull: false },
				shipping_method: { type: T.STRING(20), allowNull: false },
				tracking_number: { type: T.STRING(20), allowNull: true },
				created_at: { type: T.DATE(3), allowNull: false },
				updated_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("fulfillments", ["order_id"]);
			await qi.addIndex("fulfillments", ["status"]);
		},
	},
	...idempotencyMigrations,
	...outboxMigrations,
];

type Svc = Service & DbMethods & OutboxMethods & IdempotencyMethods & { [k: string]: any };
const STATUSES: FulfillmentStatus[] = ["PENDING", "PICKED", "PACKED", "SHIPPED", "DELIVERED", "CANCELLED"];

function publicFulfillment(f: any) {
	return { id: f.id, orderId: f.order_id, warehouseId: f.warehouse_id, status: f.status, trackingNumber: f.tracking_number ?? null, items: jsonColumn(f.items, []), updatedAt: new Date(f.updated_at).toISOString() };
}

const verbAction = (verb: Exclude<FulfillmentVerb, "cancel">) => ({
	auth: "admin" as const,
	roles: ["ops"],
	params: { id: "string|max:36" },
	handler(this: Svc, ctx: Context<{ id: string }>) {
		return this.move(ctx, ctx.params.id, verb);
	},
});

const FulfillmentService: ServiceSchema<any, any, any, Svc> = {
	name: "fulfillment",
	mixins: [
		DbMixin({
			name: "fulfillment",
			migrations,
			models: s => ({
				Fulfillment: s.define(
					"Fulfillment",
					{
						id: { type: DataTypes.STRING(36), primaryKey: true },
						order_id: DataTypes.STRING(36),
						warehouse_id: DataTypes.STRING(36),
						status: DataTypes.STRING(16),
						items: DataTypes.JSON,
						shipping_address: DataTypes.JSON,
						shipping_method: DataTypes.STRING(20),
						tracking_number: DataTypes.STRING(20),
						created_at: DataTypes.DATE(3),
						updated_at: DataTypes.DATE(3),
					},
					{ tableName: "fulfillments", timestamps: false },
				),
			}),
		}),
		IdempotencyMixin,
		OutboxMixin,
		AccessMixin,
	],

	actions: {
		create: {
			params: {
				orderId: "string|max:36",
				allocations: { type: "array", min: 1, max: 200, items: { type: "object", props: { warehouseId: "string|max:36", sku: "string|max:64", quantity: "number|integer|min:1" } } },
				shippingAddress: "object",
				shippingMethod: "string|max:20",
				idempotencyKey: "string|min:1|max:255",
			},
			handler(this: Svc, ctx: Context<any>) {
				const p = ctx.params;
				return this.once("create", p.idempotencyKey, p, async () => {
					const byWarehouse = new Map<string, { sku: string; quantity: number }[]>();
					for (const a of p.allocations) byWarehouse.set(a.warehouseId, [...(byWarehouse.get(a.warehouseId) ?? []), { sku: a.sku, quantity: a.quantity }]);
					const now = new Date();
					const rows = [...byWarehouse].map(([warehouseId, items]) => ({ id: randomUUID(), order_id: p.orderId, warehouse_id: warehouseId, status: "PENDING", items, shipping_address: p.shippingAddress, shipping_method: p.shippingMethod, tracking_number: null, created_at: now, updated_at: now }));
					await this.models.Fulfillment.bulkCreate(rows);
					return { fulfillments: rows.map(r => ({ id: r.id, warehouseId: r.warehouse_id, status: r.status })) };
				}, { waitMs: 5000 });
			},
		},

		cancel: {
			params: { orderId: "string|max:36", idempotencyKey: "string|min:1|max:255" },
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string }>) {
				return this.once("cancel", ctx.params.idempotencyKey, ctx.params, () =>
					this.transaction(async (t: Transaction) => {
						const rows: any[] = await this.models.Fulfillment.findAll({ where: { order_id: ctx.params.orderId }, transaction: t, raw: true });
						if (rows.some(r => r.status === "SHIPPED" || r.status === "DELIVERED")) throw new ConflictError("Part of the order has shipped", "NOT_CANCELLABLE");
						const [n] = await this.models.Fulfillment.update({ status: "CANCELLED", updated_at: new Date() }, { where: { order_id: ctx.params.orderId, status: { [Op.in]: ["PENDING", "PICKED", "PACKED"] } }, transaction: t });
						return { cancelled: n };
					}),
				{ waitMs: 5000 });
			},
		},

		byOrder: {
			params: { orderId: "string|max:36" },
			async handler(this: Svc, ctx: Context<{ orderId: string }>) {
				const rows: any[] = await this.models.Fulfillment.findAll({ where: { order_id: ctx.params.orderId }, order: [["warehouse_id", "ASC"]], raw: true });
				return rows.map(r => ({ id: r.id, warehouseId: r.warehouse_id, status: r.status, trackingNumber: r.tracking_number ?? null }));
			},
		},

		list: {
			auth: "admin",
			roles: ["ops"],
			params: { status: { type: "enum", values: STATUSES, optional: true }, page: "number|integer|convert|optional", pageSize: "number|integer|convert|optional" },
			async handler(this: Svc, ctx: Context<{ status?: string; page?: number; pageSize?: number }>) {
				const { page, pageSize, offset } = clampPaging(ctx.params.page, ctx.params.pageSize);
				const where = ctx.params.status ? { status: ctx.params.status } : {};
				const { rows, count } = await this.models.Fulfillment.findAndCountAll({ where, order: [["created_at", "ASC"], ["id", "ASC"]], limit: pageSize, offset, raw: true });
				return { items: rows.map(publicFulfillment), total: count, page, pageSize };
			},
		},

		pick: verbAction("pick"),
		pack: verbAction("pack"),
		ship: verbAction("ship"),
		deliver: verbAction("deliver"),
	},

	methods: {
		async move(this: Svc, ctx: Context, id: string, verb: Exclude<FulfillmentVerb, "cancel">) {
			const f: any = await this.models.Fulfillment.findByPk(id, { raw: true });
			if (!f) throw new NotFoundError("Fulfillment", "FULFILLMENT_NOT_FOUND");
			const to = transition(f.status, verb);
			const changes: Record<string, unknown> = { status: to, updated_at: new Date() };
			if (verb === "ship") {
				const shipment: any = await ctx.call("shipping.createShipment", { fulfillmentId: f.id, orderId: f.order_id, method: f.shipping_method, idempotencyKey: `ship:${f.id}` });
				changes.tracking_number = shipment.trackingNumber;
			}
			await this.transaction(async (t: Transaction) => {
				const [n] = await this.models.Fulfillment.update(changes, { where: { id, status: f.status }, transaction: t });
				if (!n) throw new ConflictError("The fulfillment changed meanwhile", "ILLEGAL_TRANSITION");
				if (verb === "ship" || verb === "deliver") {
					const siblings: any[] = await this.models.Fulfillment.findAll({ where: { order_id: f.order_id, status: { [Op.ne]: "CANCELLED" } }, transaction: t, raw: true });
					const reached = verb === "ship" ? ["SHIPPED", "DELIVERED"] : ["DELIVERED"];
					await this.recordEvent(t, verb === "ship" ? "fulfillment.fulfillment.shipped" : "fulfillment.fulfillment.delivered", {
						fulfillmentId: f.id,
						orderId: f.order_id,
						warehouseId: f.warehouse_id,
						trackingNumber: (changes.tracking_number as string) ?? f.tracking_number ?? null,
						orderComplete: siblings.every(s => reached.includes(s.status)),
					});
				}
			});
			return publicFulfillment(await this.models.Fulfillment.findByPk(id, { raw: true }));
		},
	},
};

export default FulfillmentService;
