/**
 * Fulfillment: one per warehouse that holds an order's stock, moved through pick → pack → ship →
 * deliver by operators (lib/fulfillment/state). Each move is a conditional update, so two
 * operators cannot both make it. Work that spans an order's fulfillments (create, cancel, the
 * shipped/delivered events) takes that order's lock row, so it sees its siblings as they are.
 *
 * The saga's create and cancel are idempotent commands (mixins/idempotency.mixin.ts): create is
 * one statement on PostgreSQL (the order's row, its fulfillments, the key's record); the order's
 * row makes any second create for the order — another key, or after a cancel — take no effect,
 * and cancel fences the create step's key.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, type Transaction } from "sequelize";
import { clampPaging } from "../../lib/catalog/query";
import { ConflictError, NotFoundError } from "../../lib/errors";
import { faultPoint } from "../../lib/faults";
import { planFulfillments } from "../../lib/fulfillment/plan";
import { CANCELLABLE, FULFILLMENT_STATUSES, type FulfillmentStatus, type FulfillmentVerb, orderComplete, transition } from "../../lib/fulfillment/state";
import { assertPaymentNotRefunded, syncOrder } from "../../lib/fulfillment/order-sync";
import { AccessMixin } from "../../mixins/access.mixin";
import type { Params, Runner } from "../../lib/db/sql";
import { DbMixin, type DbMethods, type Migration, jsonColumn } from "../../mixins/db.mixin";
import { IdempotencyMixin, type IdempotencyMethods, idempotencyMigrations } from "../../mixins/idempotency.mixin";
import { OutboxMixin, type OutboxMethods, outboxMigrations } from "../../mixins/outbox.mixin";
import { COMMAND_TIMEOUT_MS } from "../../lib/command-timeouts";

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
	{
		name: "i7-005-fulfillment-create-key-goes",
		async up(qi) {
			// Idempotency is the key table's alone (mixins/idempotency.mixin.ts).
			await qi.removeIndex("fulfillment_orders", "fulfillment_orders_create_key");
			await qi.sequelize.query("ALTER TABLE fulfillment_orders DROP COLUMN create_key");
			await qi.sequelize.query("ALTER TABLE fulfillment_orders DROP COLUMN request_hash");
		},
	},
];

type Svc = Service & DbMethods & OutboxMethods & IdempotencyMethods & { [k: string]: any };
type MoveVerb = Exclude<FulfillmentVerb, "cancel">;

interface CreateParams {
	orderId: string;
	allocations: { warehouseId: string; sku: string; quantity: number }[];
	shippingAddress: Record<string, unknown>;
	shippingMethod: string;
	idempotencyKey: string;
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
						created_at: DataTypes.DATE(3),
						updated_at: DataTypes.DATE(3),
					},
					{ tableName: "fulfillment_orders", timestamps: false },
				),
			}),
		}),
		IdempotencyMixin,
		OutboxMixin,
		AccessMixin,
	],

	actions: {
		/** Saga step 3: one fulfillment per warehouse of the order's allocations. */
		create: {
			timeout: COMMAND_TIMEOUT_MS["fulfillment.create"],
			params: {
				orderId: "string|min:1|max:36",
				allocations: { type: "array", min: 1, max: 500, items: { type: "object", props: { warehouseId: "string|min:1|max:36", sku: "string|min:1|max:64", quantity: "number|integer|min:1" } } },
				shippingAddress: "object",
				shippingMethod: "string|min:1|max:20",
				idempotencyKey: "string|min:1|max:255",
			},
			handler(this: Svc, ctx: Context<CreateParams>) {
				const { idempotencyKey, ...request } = ctx.params;
				return this.command({ scope: "fulfillment", name: "fulfillment.create", key: idempotencyKey, request: { op: "create", ...request } }, (p: Params) => this.createPlan(p, request));
			},
		},

		/** Cancels every fulfillment of the order, or none once one has shipped (409 NOT_CANCELLABLE). Compensation of create, and cancellation. */
		cancel: {
			timeout: COMMAND_TIMEOUT_MS["fulfillment.cancel"],
			params: { orderId: "string|min:1|max:36", idempotencyKey: "string|min:1|max:255", stepKey: "string|min:1|max:255|optional" },
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string; stepKey?: string }>) {
				const { idempotencyKey, stepKey, ...request } = ctx.params;
				const { orderId } = request;
				return this.commandTx(
					{ scope: "fulfillment", name: "fulfillment.cancel", key: idempotencyKey, request: { op: "cancel", ...request } },
					async (r: Runner) => {
						await this.lockOrderRow(r, orderId);
						const rows = await r.query<any>("SELECT id, warehouse_id, status FROM fulfillments WHERE order_id = $1", [orderId]);
						const gone = rows.filter(f => f.status === "SHIPPED" || f.status === "DELIVERED");
						if (gone.length) throw new ConflictError("Part of the order has shipped", "NOT_CANCELLABLE", { fulfillments: gone.map(summary) });
						const p = this.sql.params();
						await r.query(`UPDATE fulfillments SET status = 'CANCELLED', updated_at = ${p.ts(new Date())} WHERE order_id = ${p.text(orderId)} AND status IN (${CANCELLABLE.map(c => p.text(c)).join(", ")}) RETURNING id`, p.values);
						const q = this.sql.params();
						await r.query(`UPDATE fulfillment_orders SET state = 'CANCELLED', updated_at = ${q.ts(new Date())} WHERE order_id = ${q.text(orderId)} RETURNING order_id`, q.values);
						const after = await r.query<any>("SELECT id, warehouse_id, status FROM fulfillments WHERE order_id = $1 ORDER BY warehouse_id", [orderId]);
						return { answer: { fulfillments: after.map(summary) } };
					},
					{ fence: stepKey ? { scope: "fulfillment", key: stepKey } : undefined },
				);
			},
		},

		byOrder: {
			params: { orderId: "string|min:1|max:36" },
			async handler(this: Svc, ctx: Context<{ orderId: string }>) {
				const rows: any[] = await this.models.Fulfillment.findAll({ where: { order_id: ctx.params.orderId }, order: [["warehouse_id", "ASC"]], raw: true });
				return rows.map(r => ({ ...summary(r), trackingNumber: r.tracking_number ?? null }));
			},
		},

		/**
		 * The fulfillments of up to 100 orders in one read (the orders lists, API.md "the same shape in
		 * lists"): `{ orderIds: string[] ≤ 100 }` → `{ [orderId]: [{ id, warehouseId, status, trackingNumber }] }`,
		 * each list by warehouse like `byOrder`; an order without fulfillments maps to []. Internal like
		 * `byOrder` (no `auth`, not published by the gateway); 422 on a bad list.
		 */
		byOrders: {
			params: { orderIds: { type: "array", max: 100, items: "string|min:1|max:36" } },
			async handler(this: Svc, ctx: Context<{ orderIds: string[] }>) {
				const ids = [...new Set(ctx.params.orderIds)];
				const out: Record<string, { id: string; warehouseId: string; status: string; trackingNumber: string | null }[]> = Object.fromEntries(ids.map(id => [id, []]));
				if (!ids.length) return out;
				// Sequelize turns the array into `order_id IN (…)`, parameterised.
				const rows: any[] = await this.models.Fulfillment.findAll({ where: { order_id: ids }, order: [["warehouse_id", "ASC"], ["id", "ASC"]], raw: true });
				for (const r of rows) out[r.order_id].push({ ...summary(r), trackingNumber: r.tracking_number ?? null });
				return out;
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
		/** One fulfillment per warehouse, and the order's row: a second create for the order (another key, or after a cancel) finds it and is refused. */
		createPlan(this: Svc, p: Params, request: Omit<CreateParams, "idempotencyKey">) {
			faultPoint("fulfillment.create");
			const now = p.ts(new Date());
			const order = p.text(request.orderId);
			const plans = planFulfillments(request.allocations).map(plan => ({ id: randomUUID(), warehouseId: plan.warehouseId, items: plan.items }));
			const rows = plans.map(f => `SELECT ${p.text(f.id)} AS id, ${p.text(f.warehouseId)} AS warehouse_id, ${p.json(f.items)} AS items`).join(" UNION ALL ");
			return {
				parts: [
					{ name: "lock", sql: `INSERT INTO fulfillment_orders (order_id, state, created_at, updated_at) VALUES (${order}, 'OPEN', ${now}, ${now}) ON CONFLICT (order_id) DO NOTHING RETURNING order_id` },
					{
						name: "ful",
						sql: `INSERT INTO fulfillments (id, order_id, warehouse_id, status, items, shipping_address, shipping_method, tracking_number, created_at, updated_at)
						      SELECT f.id, ${order}, f.warehouse_id, 'PENDING', f.items, ${p.json(request.shippingAddress)}, ${p.text(request.shippingMethod)}, NULL, ${now}, ${now} FROM (${rows}) f WHERE {guard} RETURNING id`,
						requires: ["lock"],
					},
				],
				outcome: { answer: { fulfillments: plans.map(f => ({ id: f.id, warehouseId: f.warehouseId, status: "PENDING" as FulfillmentStatus })) } },
				requires: ["lock"],
				refused: () => new ConflictError("The order's fulfillments were created by another request, or cancelled", "FULFILLMENT_FAILED"),
			};
		},

		/** Takes (creating it if need be) the order's lock row for the rest of the transaction. */
		async lockOrderRow(this: Svc, r: Runner, orderId: string) {
			const p = this.sql.params();
			const now = p.ts(new Date());
			await r.query(`INSERT INTO fulfillment_orders (order_id, state, created_at, updated_at) VALUES (${p.text(orderId)}, 'OPEN', ${now}, ${now}) ON CONFLICT (order_id) DO NOTHING RETURNING order_id`, p.values);
			const [row] = await r.query<any>(`SELECT order_id, state FROM fulfillment_orders WHERE order_id = $1${r.dialect === "postgres" ? " FOR UPDATE" : ""}`, [orderId]);
			return row;
		},

		/** Takes (creating it if need be) the order's lock row for the rest of `t`. */
		async lockOrder(this: Svc, t: Transaction, orderId: string) {
			const now = new Date();
			await this.models.OrderLock.bulkCreate([{ order_id: orderId, state: "OPEN", created_at: now, updated_at: now }], { ignoreDuplicates: true, transaction: t });
			return this.models.OrderLock.findByPk(orderId, { transaction: t, lock: t.LOCK.UPDATE, raw: true });
		},



		async move(this: Svc, ctx: Context, id: string, verb: MoveVerb) {
			const f: any = await this.models.Fulfillment.findByPk(id, { raw: true });
			if (!f) throw new NotFoundError("Fulfillment", "FULFILLMENT_NOT_FOUND");
			const to = transition(f.status, verb);
			let trackingNumber: string | null = f.tracking_number ?? null;
			// API.md: ship of an order whose payment is fully refunded → 409 (lib/fulfillment/order-sync.ts).
			if (verb === "ship") await assertPaymentNotRefunded(ctx, f.order_id);
			if (verb === "ship") {
				// Keyed by the fulfillment: a repeated or concurrent ship gets the same shipment.
				const shipment: any = await ctx.call(
					"shipping.createShipment",
					{ fulfillmentId: f.id, orderId: f.order_id, method: f.shipping_method, address: jsonColumn(f.shipping_address, {}), idempotencyKey: `fulfillment:${f.id}:ship` },
					{ timeout: 5000 },
				);
				trackingNumber = shipment.trackingNumber;
			}
			let complete = false;
			try {
				await this.commitMove(f, id, to, verb, trackingNumber, ctx, (c: boolean) => (complete = c));
			} catch (err) {
				if (verb === "ship") await this.voidLostShipment(ctx, f, err);
				throw err;
			}
			// Read-your-writes (docs/EVENTS.md): the order follows before the operator gets the answer; the event converges it anyway.
			if (verb === "ship" || verb === "deliver") await syncOrder(ctx, this.logger, f.order_id, verb, complete);
			return publicFulfillment(await this.models.Fulfillment.findByPk(id, { raw: true }));
		},

		/**
		 * A ship that lost after its shipment was created (the fulfillment was cancelled, or its payment
		 * refunded, meanwhile: 409) cancels that shipment, unless the parcel did ship after all (a
		 * concurrent ship of the same fulfillment won with the same shipment). Any other failure (a
		 * database error) leaves it: a retry of the ship finds the same shipment by its key.
		 */
		async voidLostShipment(this: Svc, ctx: Context, f: any, err: any) {
			if (err?.code !== 409) return;
			const now: any = await this.models.Fulfillment.findByPk(f.id, { raw: true });
			if (!now || now.status === "SHIPPED" || now.status === "DELIVERED") return;
			try {
				await ctx.call("shipping.cancelShipment", { fulfillmentId: f.id }, { timeout: 5000 });
			} catch (e) {
				this.logger.warn(`Shipment of fulfillment ${f.id} (order ${f.order_id}) not cancelled after a lost ship`, (e as Error).message);
			}
		},

		/** The move's one transaction: conditional status change, checks under the order's lock, its event. */
		async commitMove(this: Svc, f: any, id: string, to: string, verb: MoveVerb, trackingNumber: string | null, ctx: Context, setComplete: (c: boolean) => void) {
			let complete = false;
			await this.transaction(async (t: Transaction) => {
				if (verb === "ship" || verb === "deliver") await this.lockOrder(t, f.order_id);
				const [n] = await this.models.Fulfillment.update({ status: to, tracking_number: trackingNumber, updated_at: new Date() }, { where: { id, status: f.status }, transaction: t });
				if (!n) throw new ConflictError(`The fulfillment is no longer ${f.status}; cannot ${verb} it`, "ILLEGAL_TRANSITION", { from: f.status, verb });
				// Checked again under the order's lock, after the move and before it commits: a full refund that
				// committed meanwhile is seen here (409, rolled back), and one that commits later finds the parcel
				// shipped when its cancellation takes this lock, so the refund is recorded on the shipped order.
				// The check before createShipment alone let a concurrent full refund and ship both succeed (adversary finding).
				if (verb === "ship") await assertPaymentNotRefunded(ctx, f.order_id);
				if (verb === "ship" || verb === "deliver") {
					const siblings: any[] = await this.models.Fulfillment.findAll({ where: { order_id: f.order_id }, attributes: ["status"], transaction: t, raw: true });
					complete = orderComplete(siblings.map(s => s.status), verb);
					await this.recordEvent(t, verb === "ship" ? "fulfillment.fulfillment.shipped" : "fulfillment.fulfillment.delivered", {
						fulfillmentId: f.id,
						orderId: f.order_id,
						warehouseId: f.warehouse_id,
						trackingNumber,
						orderComplete: complete,
						status: to,
					});
				}
			});
			setComplete(complete);
		},
	},
};

export default FulfillmentService;
