/**
 * Orders: checkout as a saga (authorize → reserve → fulfil → capture → confirm, compensated in
 * reverse), Idempotency-Key on POST /orders, status history, cancel, and status that follows
 * shipping and delivery events.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, type Transaction } from "sequelize";
import { config } from "../../config";
import { isAdmin } from "../../lib/access";
import { clampPaging } from "../../lib/catalog/query";
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError, UnprocessableError } from "../../lib/errors";
import type { DomainEvent, EventName, OrderEventData } from "../../lib/events";
import { type PricedLine, failureReason, orderNumber, subtotalOf, taxOf } from "../../lib/orders/pricing";
import { checkOrderTotal, widenMoneyColumns } from "../../lib/money";
import { checkDistinctLines } from "../../lib/orders/lines";
import { KNOWN_TOKENS } from "../../lib/payments/provider";
import { AccessMixin, type Meta, callerOf } from "../../mixins/access.mixin";
import { ConsumerMixin, inboxMigrations } from "../../mixins/consumer.mixin";
import { DbMixin, type DbMethods, type Migration, jsonColumn } from "../../mixins/db.mixin";
import { IdempotencyMixin, type IdempotencyMethods, idempotencyMigrations } from "../../mixins/idempotency.mixin";
import { OutboxMixin, type OutboxMethods, outboxMigrations } from "../../mixins/outbox.mixin";
import { type SagaDefinition, SagaMixin, sagaMigrations } from "../../mixins/saga.mixin";
import { ADDRESS_RULES } from "../customer/customers.service";

const migrations: Migration[] = [
	{
		name: "001-orders",
		async up(qi, T) {
			await qi.createTable("orders", {
				id: { type: T.STRING(36), primaryKey: true },
				number: { type: T.STRING(20), allowNull: false, unique: true },
				customer_id: { type: T.STRING(36), allowNull: false },
				status: { type: T.STRING(16), allowNull: false },
				failure_reason: { type: T.STRING(32), allowNull: true },
				items: { type: T.JSON, allowNull: false },
				subtotal: { type: T.INTEGER, allowNull: false },
				shipping: { type: T.INTEGER, allowNull: false },
				tax: { type: T.INTEGER, allowNull: false },
				total: { type: T.INTEGER, allowNull: false },
				currency: { type: T.STRING(3), allowNull: false },
				shipping_address: { type: T.JSON, allowNull: false },
				shipping_method: { type: T.STRING(20), allowNull: false },
				history: { type: T.JSON, allowNull: false },
				created_at: { type: T.DATE(3), allowNull: false },
				updated_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("orders", ["customer_id", "created_at"]);
			await qi.addIndex("orders", ["status", "created_at"]);
		},
	},
	{
		name: "002-order-idempotency-key",
		async up(qi, T) {
			// The order remembers the key that created it, so a retry after a crash finds it again.
			await qi.addColumn("orders", "idempotency_key", { type: T.STRING(255), allowNull: true });
			await qi.addIndex("orders", ["customer_id", "idempotency_key"], { unique: true, name: "orders_customer_idempotency_uq" });
		},
	},
	...sagaMigrations,
	...idempotencyMigrations,
	...outboxMigrations,
	...inboxMigrations,
	{
		name: "i9-001-money-bigint",
		async up(qi) {
			await widenMoneyColumns(qi, "orders", ["subtotal", "shipping", "tax", "total"]);
		},
	},
];

type Svc = Service & DbMethods & OutboxMethods & IdempotencyMethods & { [k: string]: any };

interface CheckoutData {
	orderId: string;
	customerId: string;
	total: { amount: number; currency: string };
	paymentToken: string;
	lines: { sku: string; quantity: number }[];
	shippingAddress: Record<string, unknown>;
	shippingMethod: string;
	allocations?: { warehouseId: string; sku: string; quantity: number }[];
}

const checkout: SagaDefinition<CheckoutData> = {
	name: "checkout",
	steps: [
		// tok_slow answers after 2 s: the payment steps get room for it, the others answer in milliseconds.
		{ name: "authorize", action: "payments.authorize", params: d => ({ orderId: d.orderId, amount: d.total, paymentToken: d.paymentToken }), timeout: 5000, retries: 1, compensate: { action: "payments.void", params: d => ({ orderId: d.orderId }), timeout: 5000 } },
		{ name: "reserve", action: "warehouse.reserve", params: d => ({ orderId: d.orderId, lines: d.lines }), timeout: 3000, retries: 2, onResult: (d, r) => ({ ...d, allocations: r.allocations }), compensate: { action: "warehouse.release", params: d => ({ orderId: d.orderId }), timeout: 3000 } },
		{ name: "fulfill", action: "fulfillment.create", params: d => ({ orderId: d.orderId, allocations: d.allocations, shippingAddress: d.shippingAddress, shippingMethod: d.shippingMethod }), timeout: 3000, retries: 2, compensate: { action: "fulfillment.cancel", params: d => ({ orderId: d.orderId }), timeout: 3000 } },
		{ name: "capture", action: "payments.capture", params: d => ({ orderId: d.orderId }), timeout: 5000, retries: 1, compensate: { action: "payments.refund", params: d => ({ orderId: d.orderId }), timeout: 5000 } },
		{ name: "commit", action: "warehouse.commit", params: d => ({ orderId: d.orderId }), timeout: 3000, retries: 3 },
	],
	async completed(svc: Svc, d) {
		await svc.setStatus(d.orderId, "CONFIRMED", null, "orders.order.confirmed");
	},
	async compensated(svc: Svc, d, _id, failure) {
		await svc.setStatus(d.orderId, "REJECTED", failureReason(failure.step, failure.error), "orders.order.rejected");
	},
};

/** Cancelling a confirmed order: every step is idempotent and safe to repeat, none is undone. */
const cancellation: SagaDefinition<{ orderId: string }> = {
	name: "cancel",
	steps: [
		{ name: "void", action: "payments.void", params: d => ({ orderId: d.orderId }), timeout: 5000, retries: 5 },
		{ name: "refund", action: "payments.refund", params: d => ({ orderId: d.orderId }), timeout: 5000, retries: 5 },
		{ name: "release", action: "warehouse.release", params: d => ({ orderId: d.orderId }), timeout: 3000, retries: 5 },
	],
	async completed(svc: Svc, d) {
		await svc.setStatus(d.orderId, "CANCELLED", null, "orders.order.cancelled");
	},
};

const STATUS_EVENTS: Record<string, EventName> = { SHIPPED: "orders.order.shipped", DELIVERED: "orders.order.delivered" };

function publicOrder(o: any, extra: { payment?: unknown; fulfillments?: unknown } = {}) {
	return {
		id: o.id,
		number: o.number,
		status: o.status,
		failureReason: o.failure_reason ?? null,
		items: jsonColumn<any[]>(o.items, []).map(i => ({ productId: i.productId, sku: i.sku, name: i.name, unitPrice: i.unitPrice, quantity: i.quantity })),
		subtotal: { amount: o.subtotal, currency: o.currency },
		shipping: { amount: o.shipping, currency: o.currency },
		tax: { amount: o.tax, currency: o.currency },
		total: { amount: o.total, currency: o.currency },
		shippingAddress: jsonColumn(o.shipping_address, {}),
		shippingMethod: o.shipping_method,
		payment: extra.payment ?? null,
		fulfillments: extra.fulfillments ?? [],
		history: jsonColumn(o.history, []),
		createdAt: new Date(o.created_at).toISOString(),
	};
}

const OrdersService: ServiceSchema<any, any, any, Svc> = {
	name: "orders",
	mixins: [
		DbMixin({
			name: "orders",
			migrations,
			models: s => ({
				Order: s.define(
					"Order",
					{
						id: { type: DataTypes.STRING(36), primaryKey: true },
						number: DataTypes.STRING(20),
						customer_id: DataTypes.STRING(36),
						status: DataTypes.STRING(16),
						failure_reason: DataTypes.STRING(32),
						items: DataTypes.JSON,
						subtotal: DataTypes.INTEGER,
						shipping: DataTypes.INTEGER,
						tax: DataTypes.INTEGER,
						total: DataTypes.INTEGER,
						currency: DataTypes.STRING(3),
						shipping_address: DataTypes.JSON,
						shipping_method: DataTypes.STRING(20),
						history: DataTypes.JSON,
						idempotency_key: DataTypes.STRING(255),
						created_at: DataTypes.DATE(3),
						updated_at: DataTypes.DATE(3),
					},
					{ tableName: "orders", timestamps: false },
				),
			}),
		}),
		SagaMixin([checkout, cancellation]),
		IdempotencyMixin,
		OutboxMixin,
		ConsumerMixin,
		AccessMixin,
	],

	actions: {
		create: {
			auth: "customer",
			params: {
				shippingAddress: { type: "object", strict: true, optional: true, props: { ...ADDRESS_RULES, name: "string|max:100|optional" } },
				addressId: "string|max:36|optional",
				shippingMethod: { type: "enum", values: ["standard", "express"] },
				paymentToken: { type: "enum", values: KNOWN_TOKENS, messages: { enumValue: "unknown payment token" } },
				items: { type: "array", optional: true, min: 1, max: 50, items: { type: "object", strict: true, props: { productId: "string|max:36", quantity: "number|integer|min:1|max:99" } } },
			},
			async handler(this: Svc, ctx: Context<any, Meta & { idempotencyKey?: string; $statusCode?: number }>) {
				const customer = callerOf(ctx);
				const key = ctx.meta.idempotencyKey;
				if (key === undefined) throw new BadRequestError("The Idempotency-Key header is required", "IDEMPOTENCY_KEY_REQUIRED");
				if (key.length < 1 || key.length > 255) throw new BadRequestError("Idempotency-Key must be 1..255 characters", "IDEMPOTENCY_KEY_INVALID");
				if (!ctx.params.shippingAddress === !ctx.params.addressId) {
					throw new UnprocessableError("Give either shippingAddress or addressId", "VALIDATION_ERROR", [{ field: "shippingAddress", message: "exactly one of shippingAddress or addressId" }]);
				}
				checkDistinctLines(ctx.params.items);
				const answer: any = await this.once(`checkout:${customer.id}`, key, ctx.params, () => this.checkout(ctx, customer.id, key), { staleAfterMs: 2 * config().CHECKOUT_WAIT_MS + 10_000 });
				ctx.meta.$statusCode = answer.statusCode;
				return answer.body;
			},
		},

		list: {
			auth: "customer",
			params: { page: "number|integer|convert|optional", pageSize: "number|integer|convert|optional" },
			async handler(this: Svc, ctx: Context<{ page?: number; pageSize?: number }, Meta>) {
				const { page, pageSize, offset } = clampPaging(ctx.params.page, ctx.params.pageSize);
				const { rows, count } = await this.models.Order.findAndCountAll({ where: { customer_id: callerOf(ctx).id }, order: [["created_at", "DESC"], ["id", "DESC"]], limit: pageSize, offset, raw: true });
				return { items: rows.map((o: any) => publicOrder(o)), total: count, page, pageSize };
			},
		},

		adminList: {
			auth: "admin",
			params: { status: { type: "enum", values: ["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED", "REJECTED", "CANCELLED"], optional: true }, page: "number|integer|convert|optional", pageSize: "number|integer|convert|optional" },
			async handler(this: Svc, ctx: Context<{ status?: string; page?: number; pageSize?: number }>) {
				const { page, pageSize, offset } = clampPaging(ctx.params.page, ctx.params.pageSize);
				const where = ctx.params.status ? { status: ctx.params.status } : {};
				const { rows, count } = await this.models.Order.findAndCountAll({ where, order: [["created_at", "DESC"], ["id", "DESC"]], limit: pageSize, offset, raw: true });
				return { items: rows.map((o: any) => publicOrder(o)), total: count, page, pageSize };
			},
		},

		get: {
			auth: "any",
			params: { id: "string|max:36" },
			async handler(this: Svc, ctx: Context<{ id: string }, Meta>) {
				const o = await this.ownOrder(ctx, ctx.params.id);
				const [payments, fulfillments] = await Promise.all([
					ctx.call("payments.byOrder", { orderId: o.id }, { timeout: 1000, retries: 0 }).catch(() => null) as Promise<any[] | null>,
					ctx.call("fulfillment.byOrder", { orderId: o.id }, { timeout: 1000, retries: 0 }).catch(() => null) as Promise<any[] | null>,
				]);
				const latest = payments?.[payments.length - 1];
				return publicOrder(o, { payment: latest ? { status: latest.status } : payments ? { status: "NONE" } : null, fulfillments: fulfillments ?? [] });
			},
		},

		cancel: {
			auth: "any",
			params: { id: "string|max:36" },
			async handler(this: Svc, ctx: Context<{ id: string }, Meta>) {
				const user = callerOf(ctx);
				if (user.typ === "admin" && !isAdmin(user, "support")) throw new ForbiddenError("Needs role support", "MISSING_ROLE");
				const o = await this.ownOrder(ctx, ctx.params.id);
				if (o.status === "CANCELLED") return publicOrder(o);
				if (o.status !== "CONFIRMED") throw new ConflictError(`An order that is ${o.status} cannot be cancelled`, "NOT_CANCELLABLE");
				// Shipped parcels cannot be called back: the fulfillment service decides, before anything is undone.
				await ctx.call("fulfillment.cancel", { orderId: o.id, idempotencyKey: `${o.id}:cancel:fulfillment` });
				const sagaId = randomUUID();
				await this.transaction((t: Transaction) => this.createSaga(t, "cancel", sagaId, { orderId: o.id }));
				await this.driveSaga(sagaId);
				return publicOrder(await this.models.Order.findByPk(o.id, { raw: true }));
			},
		},

		/**
		 * An operator's view of one order (the REPL's `order <id|number>`): the order as `get` gives it,
		 * found by id or number, and every saga run for it with its log. Admins and the system only.
		 */
		timeline: {
			auth: "admin",
			params: { ref: "string|min:1|max:36" },
			async handler(this: Svc, ctx: Context<{ ref: string }, Meta>) {
				const { Order } = this.models;
				const o: any = (await Order.findOne({ where: { number: ctx.params.ref }, raw: true })) ?? (await Order.findByPk(ctx.params.ref, { raw: true }));
				if (!o) throw new NotFoundError("Order", "ORDER_NOT_FOUND");
				const order = await ctx.call("orders.get", { id: o.id }, { nodeID: this.broker.nodeID });
				// Sagas keep the order id in their data (checkout, cancel): JSON read per dialect.
				const orderIdOf = this.sequelize.getDialect() === "postgres" ? "data->>'orderId'" : "json_extract(data, '$.orderId')";
				const instances: any[] = await this.sequelize.query(`SELECT id, name, status, step, failure, created_at, updated_at FROM saga_instances WHERE ${orderIdOf} = :orderId ORDER BY created_at`, { replacements: { orderId: o.id }, type: "SELECT" });
				const sagas = await Promise.all(instances.map(async i => ({ id: i.id, name: i.name, status: i.status, failure: jsonColumn(i.failure, null), createdAt: new Date(i.created_at).toISOString(), log: ((await ctx.call("orders.sagaLog", { id: i.id }, { nodeID: this.broker.nodeID })) as any).log })));
				return { order: { ...(order as object), customerId: o.customer_id }, sagas };
			},
		},

		markShipped: {
			params: { orderId: "string|max:36" },
			handler(this: Svc, ctx: Context<{ orderId: string }>) {
				return this.advance(ctx.params.orderId, "CONFIRMED", "SHIPPED");
			},
		},

		markDelivered: {
			params: { orderId: "string|max:36" },
			handler(this: Svc, ctx: Context<{ orderId: string }>) {
				return this.advance(ctx.params.orderId, "SHIPPED", "DELIVERED");
			},
		},
	},

	subscriptions: {
		async "fulfillment.fulfillment.shipped"(this: Svc, e: DomainEvent<"fulfillment.fulfillment.shipped">, t: Transaction) {
			await this.advance(e.orderId, "CONFIRMED", "SHIPPED", t);
		},
		async "fulfillment.fulfillment.delivered"(this: Svc, e: DomainEvent<"fulfillment.fulfillment.delivered">, t: Transaction) {
			if (e.orderComplete) await this.advance(e.orderId, "SHIPPED", "DELIVERED", t);
		},
	},

	methods: {
		async checkout(this: Svc, ctx: Context<any, Meta>, customerId: string, idempotencyKey: string) {
			const p = ctx.params;
			// A first attempt whose process died after creating the order: answer with that order.
			const earlier: any = await this.models.Order.findOne({ where: { customer_id: customerId, idempotency_key: idempotencyKey }, raw: true });
			if (earlier) {
				await this.waitForSagaOfOrder(earlier.id);
				const current: any = await this.models.Order.findByPk(earlier.id, { raw: true });
				return { statusCode: current.status === "PENDING" ? 202 : 201, body: publicOrder(current) };
			}
			const wanted: { productId: string; quantity: number }[] = p.items ?? ((await ctx.call("cart.getForCheckout", { customerId })) as any).items;
			if (!wanted.length) throw new UnprocessableError("The cart is empty", "EMPTY_CART", [{ field: "items", message: "nothing to order" }]);
			const address = p.shippingAddress ?? (await ctx.call("customers.getAddress", { customerId, addressId: p.addressId }));
			const products: any[] = await ctx.call("catalog.getMany", { ids: wanted.map(w => w.productId) });
			const lines: PricedLine[] = [];
			const unavailable = wanted.filter(w => !products.some(x => x.id === w.productId && x.status === "active"));
			for (const w of wanted) {
				const pr = products.find(x => x.id === w.productId);
				if (pr) lines.push({ productId: pr.id, sku: pr.sku, name: pr.name, unitPrice: pr.price, quantity: w.quantity, weightGrams: pr.weightGrams });
			}
			const subtotal = subtotalOf(lines);
			const quote: any = await ctx.call("shipping.quote", { address, lines: lines.map(l => ({ productId: l.productId, quantity: l.quantity, weightGrams: l.weightGrams })), subtotal: { amount: subtotal, currency: "USD" } });
			const shipping = quote.items.find((r: any) => r.method === p.shippingMethod)?.price.amount ?? 0;
			const tax = taxOf(subtotal, config().TAX_RATE_BPS);
			// The largest order the platform takes (lib/money.ts): refused before anything is written or charged.
			checkOrderTotal(subtotal + shipping + tax);
			const now = new Date();
			const order = {
				id: randomUUID(),
				number: orderNumber(now),
				customer_id: customerId,
				status: unavailable.length ? "REJECTED" : "PENDING",
				failure_reason: unavailable.length ? "PRODUCT_UNAVAILABLE" : null,
				items: lines.map(({ weightGrams: _w, ...l }) => l),
				subtotal,
				shipping,
				tax,
				total: subtotal + shipping + tax,
				currency: "USD",
				shipping_address: address,
				shipping_method: p.shippingMethod,
				history: [{ status: "PENDING", at: now.toISOString() }, ...(unavailable.length ? [{ status: "REJECTED", at: now.toISOString() }] : [])],
				idempotency_key: idempotencyKey,
				created_at: now,
				updated_at: now,
			};
			const sagaId = randomUUID();
			const data: CheckoutData = { orderId: order.id, customerId, total: { amount: order.total, currency: "USD" }, paymentToken: p.paymentToken, lines: lines.map(l => ({ sku: l.sku, quantity: l.quantity })), shippingAddress: address, shippingMethod: p.shippingMethod };
			await this.transaction(async (t: Transaction) => {
				await this.models.Order.create(order, { transaction: t });
				await this.recordEvent(t, "orders.order.created", this.eventData(order));
				// The saga exists exactly when the order does: a crash after this commit resumes it.
				if (!unavailable.length) await this.createSaga(t, "checkout", sagaId, data);
			});
			if (!unavailable.length) {
				this.driveSaga(sagaId).catch((err: Error) => this.logger.error("Checkout saga interrupted; recovery will resume it", { orderId: order.id, sagaId, err: err.message }));
				await this.waitForSaga(sagaId, config().CHECKOUT_WAIT_MS);
			}
			const final: any = await this.models.Order.findByPk(order.id, { raw: true });
			return { statusCode: final.status === "PENDING" ? 202 : 201, body: publicOrder(final) };
		},

		async waitForSagaOfOrder(this: Svc, orderId: string) {
			const deadline = Date.now() + config().CHECKOUT_WAIT_MS;
			while (Date.now() < deadline) {
				const o: any = await this.models.Order.findByPk(orderId, { attributes: ["status"], raw: true });
				if (o.status !== "PENDING") return;
				await new Promise(r => setTimeout(r, 50));
			}
		},

		async ownOrder(this: Svc, ctx: Context<unknown, Meta>, id: string) {
			const o: any = await this.models.Order.findByPk(id, { raw: true });
			const user = callerOf(ctx);
			// Someone else's order does not exist, as far as a customer can tell.
			if (!o || (user.typ === "customer" && o.customer_id !== user.id)) throw new NotFoundError("Order", "ORDER_NOT_FOUND");
			return o;
		},

		eventData(o: any): OrderEventData {
			return { orderId: o.id, customerId: o.customer_id, status: o.status, items: jsonColumn<any[]>(o.items, []).map(i => ({ productId: i.productId, sku: i.sku, quantity: i.quantity })), total: { amount: o.total, currency: o.currency }, failureReason: o.failure_reason ?? null };
		},

		/** Moves an order to a status, appends history and records the event, in one transaction. */
		async setStatus(this: Svc, orderId: string, status: string, reason: string | null, event: EventName, from?: string, outer?: Transaction) {
			const work = async (t: Transaction) => {
				const o: any = await this.models.Order.findByPk(orderId, { transaction: t, raw: true });
				if (!o || (from && o.status !== from) || o.status === status) return false;
				const history = [...jsonColumn<any[]>(o.history, []), { status, at: new Date().toISOString() }];
				const [n] = await this.models.Order.update({ status, failure_reason: reason, history, updated_at: new Date() }, { where: { id: orderId, status: o.status }, transaction: t });
				if (!n) return false;
				await this.recordEvent(t, event as any, this.eventData({ ...o, status, failure_reason: reason }) as any);
				return true;
			};
			return outer ? work(outer) : this.transaction(work);
		},

		async advance(this: Svc, orderId: string, from: string, to: string, t?: Transaction) {
			await this.setStatus(orderId, to, null, STATUS_EVENTS[to], from, t);
			return { orderId, status: to };
		},
	},
};

export default OrdersService;
