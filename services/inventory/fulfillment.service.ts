/**
 * Fulfillment: one per warehouse that holds an order's stock, moved through pick → pack → ship →
 * deliver by operators (lib/fulfillment/state). Each move is a conditional update, so two
 * operators cannot both make it. Work that spans an order's fulfillments (create, cancel, the
 * shipped/delivered events) takes that order's lock row, so it sees its siblings as they are.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, Op, type Transaction } from "sequelize";
import { clampPaging } from "../../lib/catalog/query";
import { ConflictError, NotFoundError, UnprocessableError } from "../../lib/errors";
import { faultPoint } from "../../lib/faults";
import { planFulfillments } from "../../lib/fulfillment/plan";
import { CANCELLABLE, FULFILLMENT_STATUSES, type FulfillmentStatus, type FulfillmentVerb, orderComplete, transition } from "../../lib/fulfillment/state";
import { AccessMixin } from "../../mixins/access.mixin";
import { DbMixin, type DbMethods, type Migration, jsonColumn } from "../../mixins/db.mixin";
import { idempotencyMigrations, requestHash } from "../../mixins/idempotency.mixin";
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
	// Applied by earlier versions (which kept create/cancel keys there); kept so history replays.
	...idempotencyMigrations,
	...outboxMigrations,
	{
		name: "002-fulfillment-orders",
		async up(qi, T) {
			// One row per order: the lock its create/cancel/ship/deliver take, the create's key, and
			// whether the order was cancelled (a create arriving after its cancel must not revive it).
			await qi.createTable("fulfillment_orders", {
				order_id: { type: T.STRING(36), primaryKey: true },
				state: { type: T.STRING(16), allowNull: false },
				create_key: { type: T.STRING(255), allowNull: true },
				request_hash: { type: T.STRING(64), allowNull: true },
				created_at: { type: T.DATE(3), allowNull: false },
				updated_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("fulfillment_orders", ["create_key"], { unique: true, name: "fulfillment_orders_create_key" });
			await qi.addIndex("fulfillments", ["order_id", "warehouse_id"], { unique: true, name: "fulfillments_order_warehouse" });
		},
	},
];

type Svc = Service & DbMethods & OutboxMethods & { [k: string]: any };
type MoveVerb = Exclude<FulfillmentVerb, "cancel">;

interface CreateParams {
	orderId: string;
	allocations: { warehouseId: string; sku: string; quantity: number }[];
	shippingAddress: Record<string, unknown>;
	shippingMethod: string;
	idempotencyKey: string;
}

/** Whether a unique-constraint error is about `column` (PostgreSQL names fields in an object, SQLite in an array). */
function violated(err: unknown, column: string): boolean {
	const fields = (err as { fields?: string[] | Record<string, unknown> }).fields;
	return Array.isArray(fields) ? fields.includes(column) : Boolean(fields && column in fields);
}

const summary = (f: any) => ({ id: f.id, warehouseId: f.warehouse_id, status: f.status as FulfillmentStatus });

function publicFulfillment(f: any) {
	return {
		id: f.id,
		orderId: f.order_id,
		warehouseId: f.warehouse_id,
		status: f.status,
		trackingNumber: f.tracking_number ?? null,
		items: jsonColumn(f.items, []),
		shippingMethod: f.shipping_method,
		shippingAddress: jsonColumn(f.shipping_address, {}),
		createdAt: new Date(f.created_at).toISOString(),
		updatedAt: new Date(f.updated_at).toISOString(),
	};
}

const verbAction = (verb: MoveVerb) => ({
	auth: "admin" as const,
	roles: ["ops"],
	params: { id: "string|min:1|max:36" },
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
				OrderLock: s.define(
					"FulfillmentOrder",
					{
						order_id: { type: DataTypes.STRING(36), primaryKey: true },
						state: DataTypes.STRING(16),
						create_key: DataTypes.STRING(255),
						request_hash: DataTypes.STRING(64),
						created_at: DataTypes.DATE(3),
						updated_at: DataTypes.DATE(3),
					},
					{ tableName: "fulfillment_orders", timestamps: false },
				),
			}),
		}),
		OutboxMixin,
		AccessMixin,
	],

	actions: {
		/** Saga step 3: one fulfillment per warehouse of the order's allocations. */
		create: {
			params: {
				orderId: "string|min:1|max:36",
				allocations: { type: "array", min: 1, max: 500, items: { type: "object", props: { warehouseId: "string|min:1|max:36", sku: "string|min:1|max:64", quantity: "number|integer|min:1" } } },
				shippingAddress: "object",
				shippingMethod: "string|min:1|max:20",
				idempotencyKey: "string|min:1|max:255",
			},
			async handler(this: Svc, ctx: Context<CreateParams>) {
				const { idempotencyKey: _key, ...request } = ctx.params;
				const hash = requestHash(request);
				try {
					return await this.transaction((t: Transaction) => this.createOnce(t, ctx.params, hash));
				} catch (err) {
					// The key is unique across orders: another order already used it.
					if (this.isUniqueViolation(err) && violated(err, "create_key")) throw new UnprocessableError("This idempotency key was used for another order", "IDEMPOTENCY_KEY_REUSED");
					throw err;
				}
			},
		},

		/** Cancels every fulfillment of the order, or none once one has shipped. Idempotent by nature. */
		cancel: {
			params: { orderId: "string|min:1|max:36", idempotencyKey: "string|min:1|max:255" },
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string }>) {
				const { orderId } = ctx.params;
				return this.transaction(async (t: Transaction) => {
					await this.lockOrder(t, orderId);
					const rows: any[] = await this.models.Fulfillment.findAll({ where: { order_id: orderId }, transaction: t, raw: true });
					const gone = rows.filter(r => r.status === "SHIPPED" || r.status === "DELIVERED");
					if (gone.length) throw new ConflictError("Part of the order has shipped", "NOT_CANCELLABLE", { fulfillments: gone.map(summary) });
					const now = new Date();
					await this.models.Fulfillment.update({ status: "CANCELLED", updated_at: now }, { where: { order_id: orderId, status: { [Op.in]: CANCELLABLE } }, transaction: t });
					await this.models.OrderLock.update({ state: "CANCELLED", updated_at: now }, { where: { order_id: orderId }, transaction: t });
					return { fulfillments: await this.summaries(t, orderId) };
				});
			},
		},

		byOrder: {
			params: { orderId: "string|min:1|max:36" },
			async handler(this: Svc, ctx: Context<{ orderId: string }>) {
				const rows: any[] = await this.models.Fulfillment.findAll({ where: { order_id: ctx.params.orderId }, order: [["warehouse_id", "ASC"]], raw: true });
				return rows.map(r => ({ ...summary(r), trackingNumber: r.tracking_number ?? null }));
			},
		},

		list: {
			auth: "admin",
			roles: ["ops"],
			params: {
				status: { type: "enum", values: FULFILLMENT_STATUSES, optional: true },
				orderId: "string|min:1|max:36|optional",
				page: "number|integer|min:1|convert|optional",
				pageSize: "number|integer|min:1|convert|optional",
			},
			async handler(this: Svc, ctx: Context<{ status?: string; orderId?: string; page?: number; pageSize?: number }>) {
				const { page, pageSize, offset } = clampPaging(ctx.params.page, ctx.params.pageSize);
				const where: Record<string, unknown> = {};
				if (ctx.params.status) where.status = ctx.params.status;
				if (ctx.params.orderId) where.order_id = ctx.params.orderId;
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
		async createOnce(this: Svc, t: Transaction, p: CreateParams, hash: string) {
			const lock = await this.lockOrder(t, p.orderId);
			if (lock.create_key === p.idempotencyKey) {
				if (lock.request_hash !== hash) throw new UnprocessableError("This idempotency key was used with a different request", "IDEMPOTENCY_KEY_REUSED");
				return { fulfillments: await this.summaries(t, p.orderId) };
			}
			if (lock.state === "CANCELLED") throw new ConflictError("The order's fulfillment was cancelled", "FULFILLMENT_FAILED");
			if (lock.create_key || (await this.models.Fulfillment.count({ where: { order_id: p.orderId }, transaction: t }))) {
				throw new ConflictError("The order's fulfillments were created by another request", "FULFILLMENT_FAILED");
			}
			const now = new Date();
			await this.models.OrderLock.update({ create_key: p.idempotencyKey, request_hash: hash, updated_at: now }, { where: { order_id: p.orderId }, transaction: t });
			const rows = planFulfillments(p.allocations).map(plan => ({
				id: randomUUID(),
				order_id: p.orderId,
				warehouse_id: plan.warehouseId,
				status: "PENDING",
				items: plan.items,
				shipping_address: p.shippingAddress,
				shipping_method: p.shippingMethod,
				tracking_number: null,
				created_at: now,
				updated_at: now,
			}));
			await this.models.Fulfillment.bulkCreate(rows, { transaction: t });
			faultPoint("fulfillment.create");
			return { fulfillments: rows.map(summary) };
		},

		/** Takes (creating it if need be) the order's lock row for the rest of `t`. */
		async lockOrder(this: Svc, t: Transaction, orderId: string) {
			const now = new Date();
			await this.models.OrderLock.bulkCreate([{ order_id: orderId, state: "OPEN", created_at: now, updated_at: now }], { ignoreDuplicates: true, transaction: t });
			return this.models.OrderLock.findByPk(orderId, { transaction: t, lock: t.LOCK.UPDATE, raw: true });
		},

		async summaries(this: Svc, t: Transaction, orderId: string) {
			const rows: any[] = await this.models.Fulfillment.findAll({ where: { order_id: orderId }, order: [["warehouse_id", "ASC"]], transaction: t, raw: true });
			return rows.map(summary);
		},

		async move(this: Svc, ctx: Context, id: string, verb: MoveVerb) {
			const f: any = await this.models.Fulfillment.findByPk(id, { raw: true });
			if (!f) throw new NotFoundError("Fulfillment", "FULFILLMENT_NOT_FOUND");
			const to = transition(f.status, verb);
			let trackingNumber: string | null = f.tracking_number ?? null;
			if (verb === "ship") {
				// Keyed by the fulfillment: a repeated or concurrent ship gets the same shipment.
				const shipment: any = await ctx.call(
					"shipping.createShipment",
					{ fulfillmentId: f.id, orderId: f.order_id, method: f.shipping_method, address: jsonColumn(f.shipping_address, {}), idempotencyKey: `fulfillment:${f.id}:ship` },
					{ timeout: 5000 },
				);
				trackingNumber = shipment.trackingNumber;
			}
			await this.transaction(async (t: Transaction) => {
				if (verb === "ship" || verb === "deliver") await this.lockOrder(t, f.order_id);
				const [n] = await this.models.Fulfillment.update({ status: to, tracking_number: trackingNumber, updated_at: new Date() }, { where: { id, status: f.status }, transaction: t });
				if (!n) throw new ConflictError(`The fulfillment is no longer ${f.status}; cannot ${verb} it`, "ILLEGAL_TRANSITION", { from: f.status, verb });
				if (verb === "ship" || verb === "deliver") {
					const siblings: any[] = await this.models.Fulfillment.findAll({ where: { order_id: f.order_id }, attributes: ["status"], transaction: t, raw: true });
					await this.recordEvent(t, verb === "ship" ? "fulfillment.fulfillment.shipped" : "fulfillment.fulfillment.delivered", {
						fulfillmentId: f.id,
						orderId: f.order_id,
						warehouseId: f.warehouse_id,
						trackingNumber,
						orderComplete: orderComplete(siblings.map(s => s.status), verb),
					});
				}
			});
			return publicFulfillment(await this.models.Fulfillment.findByPk(id, { raw: true }));
		},
	},
};

export default FulfillmentService;
