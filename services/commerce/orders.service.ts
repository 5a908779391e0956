/**
 * Orders: checkout as a saga (authorize → reserve → fulfil → capture → confirm, compensated in
 * reverse), Idempotency-Key on POST /orders, status history, cancel, and status that follows
 * shipping and delivery events.
 *
 * A checkout is two writes here: the order, its `orders.order.created` event, its saga and its
 * key's record in one (one statement on PostgreSQL); and, when the saga settles, the order's final
 * status, its event, the saga's end and — while the request still waits — the key's answer in
 * another. A repeat of the key replays that answer; while the saga really runs (its lease is
 * live) it gets 409 IDEMPOTENCY_KEY_IN_FLIGHT; when the request's node died, the repeat takes the
 * saga over and answers as the first request would have (API.md, Idempotency-Key).
 */
import { randomUUID } from "node:crypto";
import { type Context, Errors, type Service, type ServiceSchema } from "moleculer";
import { DataTypes, type Transaction } from "sequelize";
import { config } from "../../config";
import { isAdmin } from "../../lib/access";
import { clampPaging } from "../../lib/catalog/query";
import { type Params, type Part, violationOf } from "../../lib/db/sql";
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError, UnprocessableError } from "../../lib/errors";
import { productsById } from "../../lib/catalog/products-by-id";
import type { DomainEvent, EventName, OrderEventData } from "../../lib/events";
import { type PricedLine, failureReason, orderNumber, subtotalOf, taxOf } from "../../lib/orders/pricing";
import { checkOrderTotal, widenMoneyColumns } from "../../lib/money";
import { checkDistinctLines } from "../../lib/orders/lines";
import { KNOWN_TOKENS } from "../../lib/payments/provider";
import { originFor, shippingRates } from "../../lib/shipping/rates";
import { AccessMixin, type Meta, callerOf } from "../../mixins/access.mixin";
import { ConsumerMixin, inboxMigrations } from "../../mixins/consumer.mixin";
import { DbMixin, type DbMethods, type Migration, jsonColumn } from "../../mixins/db.mixin";
import { type Command, IdempotencyMixin, type IdempotencyMethods, idempotencyMigrations } from "../../mixins/idempotency.mixin";
import { type OutboxEvent, OutboxMixin, type OutboxMethods, outboxMigrations } from "../../mixins/outbox.mixin";
import { type SagaDefinition, SagaMixin, type Settlement, sagaMigrations } from "../../mixins/saga.mixin";
import { ADDRESS_RULES } from "../../lib/address";
import { sagaCall } from "../../lib/command-timeouts";
import { OrderStateMixin, orderStateColumns, orderStateMigrations, orderStateView } from "./order-state.mixin";

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
	{
		name: "i7-007-order-key-column-goes",
		async up(qi) {
			// The key table is the one idempotency mechanism: the order no longer keeps its own copy of the key.
			await qi.removeIndex("orders", "orders_customer_idempotency_uq");
			await qi.sequelize.query("ALTER TABLE orders DROP COLUMN idempotency_key");
		},
	},
	...orderStateMigrations,
];

/** How long a node prices checkouts from the shipping origins it last asked for. */
const SHIPPING_ORIGINS_TTL_MS = 30_000;

type Svc = Service & DbMethods & OutboxMethods & IdempotencyMethods & { [k: string]: any };

interface CheckoutData {
	orderId: string;
	customerId: string;
	total: { amount: number; currency: string };
	paymentToken: string;
	lines: { sku: string; quantity: number }[];
	/** What the order's events say about its items. */
	items: { productId: string; sku: string; quantity: number }[];
	shippingAddress: Record<string, unknown>;
	shippingMethod: string;
	allocations?: { warehouseId: string; sku: string; quantity: number }[];
	/** What authorize, then capture answered (in memory: the checkout answer's `payment`, no extra call). */
	payment?: { status: string };
	/** The authorised payment (authorize's answer), carried to capture so that it need not read it (issue 7); absent in sagas begun before. */
	authorized?: { id: string; providerRef: string };
	/** What fulfill created (in memory: the checkout answer's `fulfillments`). */
	fulfillments?: { id: string; warehouseId: string; status: string }[];
}

/** The cancellation's input: what its event says about the order. */
type CancelData = Pick<CheckoutData, "orderId" | "customerId" | "total" | "items">;

/**
 * Each step and compensation is called with the time its callee declares (lib/command-timeouts.ts
 * `sagaCall`), so a timeout there counts against the callee's breaker and a hung replica is
 * isolated. Retries reuse the step's key, so a call that timed out and a retry take effect once.
 */
export const checkout: SagaDefinition<CheckoutData> = {
	name: "checkout",
	steps: [
		{ name: "authorize", ...sagaCall("payments.authorize"), params: d => ({ orderId: d.orderId, amount: d.total, paymentToken: d.paymentToken }), retries: 2, onResult: (d, r) => ({ ...d, payment: { status: r.status }, ...(r.paymentId && r.providerRef ? { authorized: { id: r.paymentId, providerRef: r.providerRef } } : {}) }), compensate: { ...sagaCall("payments.void"), params: d => ({ orderId: d.orderId }) } },
		{ name: "reserve", ...sagaCall("warehouse.reserve"), params: d => ({ orderId: d.orderId, lines: d.lines }), retries: 2, onResult: (d, r) => ({ ...d, allocations: r.allocations }), compensate: { ...sagaCall("warehouse.release"), params: d => ({ orderId: d.orderId }) } },
		{ name: "fulfill", ...sagaCall("fulfillment.create"), params: d => ({ orderId: d.orderId, allocations: d.allocations, shippingAddress: d.shippingAddress, shippingMethod: d.shippingMethod }), retries: 2, onResult: (d, r) => ({ ...d, fulfillments: r.fulfillments }), compensate: { ...sagaCall("fulfillment.cancel"), params: d => ({ orderId: d.orderId }) } },
		{ name: "capture", ...sagaCall("payments.capture"), params: d => ({ orderId: d.orderId, ...(d.authorized ? { payment: { ...d.authorized, amount: d.total } } : {}) }), retries: 2, onResult: (d, r) => ({ ...d, payment: { status: r.status } }), compensate: { ...sagaCall("payments.refund"), params: d => ({ orderId: d.orderId }) } },
		{ name: "commit", ...sagaCall("warehouse.commit"), params: d => ({ orderId: d.orderId }), retries: 3 },
	],
	completed: (svc: Svc, d, s) => svc.finalParts(s, d, "CONFIRMED", null, "orders.order.confirmed", "PENDING"),
	compensated: (svc: Svc, d, s) => svc.finalParts(s, d, "REJECTED", failureReason(s.failure?.step ?? "unknown", s.failure?.error ?? {}), "orders.order.rejected", "PENDING"),
};

/** Cancelling a confirmed order: every step is idempotent and must happen; a step that keeps failing parks the saga and is retried. */
export const cancellation: SagaDefinition<CancelData> = {
	name: "cancel",
	forwardOnly: true,
	steps: [
		{ name: "void", ...sagaCall("payments.void"), params: d => ({ orderId: d.orderId }), retries: 5 },
		{ name: "refund", ...sagaCall("payments.refund"), params: d => ({ orderId: d.orderId }), retries: 5 },
		{ name: "release", ...sagaCall("warehouse.release"), params: d => ({ orderId: d.orderId }), retries: 5 },
	],
	completed: (svc: Svc, d, s) => [
		...svc.finalParts(s, d, "CANCELLED", null, "orders.order.cancelled", "CONFIRMED"),
		svc.settlePart(s.p, { scope: "cancel", key: d.orderId }, { answer: { sagaId: s.sagaId } }, s.requires),
	],
};

/** What POST /orders answers (and the key's record keeps): the status and the order. */
interface CheckoutAnswer {
	statusCode: number;
	body: ReturnType<typeof publicOrder>;
}
interface StartedCheckout {
	sagaId: string;
	row: any;
	data: CheckoutData;
}
/** A saga started by a request whose node died, followed by a repeat of its key. */
interface FollowedCheckout {
	sagaId: string;
	row: any;
}
type Started = { started: StartedCheckout };

/** An order's payment and fulfillments as its views show them; a part left out (undefined) when unknown — never null (API.md). */
interface OrderParts {
	payment?: { status: string };
	fulfillments?: { id: string; warehouseId?: string; status: string; trackingNumber: string | null }[];
}

/** The order's payment as views show it: the newest payment's status (as GET /orders/:id always did), `NONE` when there is none. */
function paymentView(payments: { status: string }[]): { status: string } {
	const latest = payments[payments.length - 1];
	return { status: latest ? latest.status : "NONE" };
}

/** A failing call the callee refused (a 4xx of its own, not "service not found" and the like): it took no effect. */
const refused = (e: { code: number | null; type: string | null } | undefined) =>
	!!e && typeof e.code === "number" && e.code >= 400 && e.code < 500 && !["REQUEST_TIMEOUT", "SERVICE_NOT_FOUND", "SERVICE_NOT_AVAILABLE", "QUEUE_FULL", "SERVICE_UNAVAILABLE"].includes(e.type ?? "");

/**
 * The checkout answer's parts from what the saga itself learned (no remote call; API.md "the same
 * shape in the checkout answer"). COMPLETED: captured, the parcels fulfill created. COMPENSATED:
 * every compensation of a done step ran, so a captured payment was refunded, an authorised one
 * voided, a declined one is FAILED, the parcels are CANCELLED; a part whose effect is unknown (the
 * failing call timed out at authorize, capture or fulfill; or the saga was taken over and its
 * results are not in memory) is left out.
 */
function sagaParts(d: CheckoutData, status: "COMPLETED" | "COMPENSATED", failure?: Settlement["failure"]): OrderParts {
	const parcels = (st?: string) => d.fulfillments?.map(f => ({ id: f.id, warehouseId: f.warehouseId, status: st ?? f.status, trackingNumber: null })).sort((a, b) => a.warehouseId.localeCompare(b.warehouseId));
	if (status === "COMPLETED") return { payment: { status: "CAPTURED" }, fulfillments: parcels() };
	const step = failure?.step;
	const no = refused(failure?.error);
	const known = d.payment?.status;
	// A declined authorisation is kept as FAILED by payments (payments.authorize).
	const declined = step === "authorize" && ["PAYMENT_DECLINED", "INSUFFICIENT_FUNDS"].includes(failure?.error.type ?? "");
	const payment = known === "CAPTURED" ? { status: "REFUNDED" } : known === "AUTHORIZED" && (step !== "capture" || no) ? { status: "VOIDED" } : declined ? { status: "FAILED" } : undefined;
	const fulfillments = d.fulfillments ? parcels("CANCELLED") : step === "authorize" || step === "reserve" || (step === "fulfill" && no) ? [] : undefined;
	return { payment, fulfillments };
}

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
		// Every view carries them (API.md); a part whose service cannot answer is left out, never null (issue 8).
		...(extra.payment !== undefined ? { payment: extra.payment } : {}),
		...(extra.fulfillments !== undefined ? { fulfillments: extra.fulfillments } : {}),
		history: jsonColumn(o.history, []),
		...orderStateView(o),
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
						...orderStateColumns,
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
		OrderStateMixin,
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
				// API.md's 1..99 per product: one line per product (lib/orders/lines.ts).
				checkDistinctLines(ctx.params.items);
				// API.md: the key is scoped to the caller.
				const cmd: Command = { scope: `checkout:${customer.id}`, name: "checkout", key, request: ctx.params };
				const answer: CheckoutAnswer = await this.checkout(ctx, cmd, customer.id);
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
				const parts = await this.orderParts(rows.map((o: any) => o.id), ctx);
				return { items: rows.map((o: any) => publicOrder(o, parts(o.id))), total: count, page, pageSize };
			},
		},

		adminList: {
			auth: "admin",
			params: { status: { type: "enum", values: ["PENDING", "CONFIRMED", "SHIPPED", "DELIVERED", "REJECTED", "CANCELLED"], optional: true }, page: "number|integer|convert|optional", pageSize: "number|integer|convert|optional" },
			async handler(this: Svc, ctx: Context<{ status?: string; page?: number; pageSize?: number }>) {
				const { page, pageSize, offset } = clampPaging(ctx.params.page, ctx.params.pageSize);
				const where = ctx.params.status ? { status: ctx.params.status } : {};
				const { rows, count } = await this.models.Order.findAndCountAll({ where, order: [["created_at", "DESC"], ["id", "DESC"]], limit: pageSize, offset, raw: true });
				const parts = await this.orderParts(rows.map((o: any) => o.id), ctx);
				return { items: rows.map((o: any) => publicOrder(o, parts(o.id))), total: count, page, pageSize };
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
				// A part whose service cannot answer is left out (never null): the order is still served.
				return publicOrder(o, { payment: payments ? paymentView(payments) : undefined, fulfillments: fulfillments ?? undefined });
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
				const after = await this.cancelConfirmed(ctx, o, true);
				// API.md: a cancel's 200 carries the order CANCELLED. A cancellation still running when
				// the wait ends (payments or the warehouse slow or hung) is a 409 the client repeats, never
				// a 200 with the order still CONFIRMED (adversary finding; the saga goes on and finishes).
				// Only here: an operator's full refund, which cancels too, answers with the refund.
				if (after?.status === "CONFIRMED") throw new ConflictError("The order is being cancelled; repeat the request to see it done", "CANCELLATION_IN_PROGRESS");
				return publicOrder(after);
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
	},

	/** Thin: the convergent rules are lib/orders/transitions.ts, applied by OrderStateMixin. */
	subscriptions: {
		"fulfillment.fulfillment.shipped"(this: Svc, e: DomainEvent<"fulfillment.fulfillment.shipped">, t: Transaction) {
			return this.applyFulfillmentFact(e.orderId, { kind: "shipped" }, t);
		},
		"fulfillment.fulfillment.delivered"(this: Svc, e: DomainEvent<"fulfillment.fulfillment.delivered">, t: Transaction) {
			return this.applyFulfillmentFact(e.orderId, { kind: "delivered", orderComplete: e.orderComplete }, t);
		},
		"payments.payment.refunded"(this: Svc, e: DomainEvent<"payments.payment.refunded">, t: Transaction) {
			return this.applyOperatorRefund(e, t);
		},
	},

	methods: {
		/**
		 * Payments and fulfillments of up to 100 orders (a page), one batched call to each
		 * (`payments.byOrders`, `fulfillment.byOrders`, ~1 s each, no retry). Answers a lookup
		 * orderId → parts; a service that cannot answer leaves its part out of every order (never
		 * null; API.md "the same shape in lists").
		 */
		async orderParts(this: Svc, ids: string[], ctx?: Context): Promise<(orderId: string) => OrderParts> {
			if (!ids.length) return () => ({});
			const call = (action: string) => ((ctx ? ctx.call(action, { orderIds: ids }, { timeout: 1000, retries: 0 }) : this.broker.call(action, { orderIds: ids }, { timeout: 1000, retries: 0 })) as Promise<Record<string, any[]>>).catch(() => null);
			const [payments, fulfillments] = await Promise.all([call("payments.byOrders"), call("fulfillment.byOrders")]);
			return id => ({ payment: payments ? paymentView(payments[id] ?? []) : undefined, fulfillments: fulfillments ? (fulfillments[id] ?? []) : undefined });
		},

		/**
		 * The countries parcels leave from (shipping's read model of the active warehouses), asked at
		 * most every SHIPPING_ORIGINS_TTL_MS: warehouses change rarely, and a checkout should not pay a
		 * remote hop for them. While shipping cannot answer, the last list known (else none: the
		 * default origin) is used.
		 */
		async shippingOrigins(this: Svc, ctx: Context): Promise<string[]> {
			const now = Date.now();
			const memo = this.originsMemo as { at: number; origins: string[] } | undefined;
			if (memo && now - memo.at < SHIPPING_ORIGINS_TTL_MS) return memo.origins;
			try {
				const { origins } = (await ctx.call("shipping.origins", {}, { timeout: 1000, retries: 0 })) as { origins: string[] };
				this.originsMemo = { at: now, origins };
				return origins;
			} catch (err) {
				this.logger.warn(`Shipping origins unavailable (${(err as Error).message}); pricing from ${memo ? "the last known ones" : "the default origin"}`);
				this.originsMemo = { at: now, origins: memo?.origins ?? [] };
				return this.originsMemo.origins;
			}
		},

		/** POST /orders: a fresh key starts the order and its saga and waits for it; a repeat answers from the key's record. */
		async checkout(this: Svc, ctx: Context<any, Meta>, cmd: Command, customerId: string): Promise<CheckoutAnswer> {
			for (let attempt = 1; ; attempt++) {
				try {
					const r = await this.command<CheckoutAnswer | Started>(cmd, (p: Params) => this.checkoutPlan(p, ctx, customerId), { pending: (ref: any) => this.checkoutRepeat(cmd, ref) });
					return "started" in r ? await this.awaitCheckout(cmd, r.started) : r;
				} catch (err) {
					// Two orders drew the same number (the unique index decided): draw again.
					const v = violationOf(err);
					if (v?.kind === "unique" && v.detail.includes("number") && attempt < 3) continue;
					throw err;
				}
			}
		},

		/** Prices the order from the catalog (read once) and the local rate table, and plans its write. */
		async checkoutPlan(this: Svc, p: Params, ctx: Context<any, Meta>, customerId: string) {
			const req = ctx.params;
			const wanted: { productId: string; quantity: number }[] = req.items ?? ((await ctx.call("cart.getForCheckout", { customerId })) as any).items;
			if (!wanted.length) throw new UnprocessableError("The cart is empty", "EMPTY_CART", [{ field: "items", message: "nothing to order" }]);
			const address = req.shippingAddress ?? (await ctx.call("customers.getAddress", { customerId, addressId: req.addressId }));
			const products: any[] = await productsById(ctx, wanted.map(w => w.productId));
			const byId = new Map(products.map(x => [x.id, x]));
			const unavailable = wanted.some(w => byId.get(w.productId)?.status !== "active");
			const lines: PricedLine[] = [];
			for (const w of wanted) {
				const pr = byId.get(w.productId);
				if (pr) lines.push({ productId: pr.id, sku: pr.sku, name: pr.name, unitPrice: pr.price, quantity: w.quantity, weightGrams: pr.weightGrams });
			}
			const subtotal = subtotalOf(lines);
			// The rate table is a pure rule (lib/shipping/rates): priced here, from the shipping origins known to this node.
			const origin = originFor(await this.shippingOrigins(ctx), String(address.country));
			const rates = shippingRates({ weightGrams: lines.reduce((n, l) => n + l.quantity * l.weightGrams, 0), origin, country: String(address.country), subtotal, freeShippingThreshold: config().FREE_SHIPPING_THRESHOLD_CENTS });
			const shipping = rates.find(r => r.method === req.shippingMethod)?.price.amount ?? 0;
			const tax = taxOf(subtotal, config().TAX_RATE_BPS);
			// The largest order the platform takes (lib/money.ts): refused before anything is written or charged.
			checkOrderTotal(subtotal + shipping + tax);
			const now = new Date();
			const at = now.toISOString();
			const row = {
				id: randomUUID(),
				number: orderNumber(now),
				customer_id: customerId,
				status: unavailable ? "REJECTED" : "PENDING",
				failure_reason: unavailable ? "PRODUCT_UNAVAILABLE" : null,
				items: lines.map(({ weightGrams: _w, ...l }) => l),
				subtotal,
				shipping,
				tax,
				total: subtotal + shipping + tax,
				currency: "USD",
				shipping_address: address,
				shipping_method: req.shippingMethod,
				history: [{ status: "PENDING", at }, ...(unavailable ? [{ status: "REJECTED", at }] : [])],
				created_at: now,
				updated_at: now,
			};
			const sagaId = randomUUID();
			const data: CheckoutData = {
				orderId: row.id,
				customerId,
				total: { amount: row.total, currency: "USD" },
				paymentToken: req.paymentToken,
				lines: lines.map(l => ({ sku: l.sku, quantity: l.quantity })),
				items: lines.map(l => ({ productId: l.productId, sku: l.sku, quantity: l.quantity })),
				shippingAddress: address,
				shippingMethod: req.shippingMethod,
			};
			const parts: Part[] = [
				{
					name: "ord",
					sql: `INSERT INTO orders (id, number, customer_id, status, failure_reason, items, subtotal, shipping, tax, total, currency, shipping_address, shipping_method, history, created_at, updated_at)
					      VALUES (${p.text(row.id)}, ${p.text(row.number)}, ${p.text(customerId)}, ${p.text(row.status)}, ${p.text(row.failure_reason)}, ${p.json(row.items)}, ${p.int(subtotal)}, ${p.int(shipping)}, ${p.int(tax)}, ${p.int(row.total)}, 'USD', ${p.json(address)}, ${p.text(row.shipping_method)}, ${p.json(row.history)}, ${p.ts(now)}, ${p.ts(now)}) RETURNING id`,
				},
				this.outboxPart(p, "outbox", [["orders.order.created", this.eventData(row)]], ["ord"]),
			];
			if (unavailable) {
				// Refused at once (PRODUCT_UNAVAILABLE): the order and its answer are final in this one write.
				// Nothing was asked of payments or fulfillment: no payment, no parcels.
				const answer: CheckoutAnswer = { statusCode: 201, body: publicOrder(row, { payment: { status: "NONE" }, fulfillments: [] }) };
				return { parts, outcome: { answer }, requires: ["ord"] };
			}
			// The saga exists exactly when the order does: a crash after this write resumes it.
			parts.push(this.sagaPart(p, "checkout", sagaId, data, ["ord"]));
			return { parts, outcome: { pending: { orderId: row.id, sagaId } }, requires: ["ord"], result: { started: { sagaId, row, data } } };
		},

		/**
		 * Drives the new saga here and waits for it up to CHECKOUT_WAIT_MS. If it settles meanwhile,
		 * its last write stored this very answer (201); otherwise the answer is 202 PENDING, stored
		 * unless the saga's last write got there first (then that one is the answer).
		 */
		async awaitCheckout(this: Svc, cmd: Command, s: StartedCheckout | FollowedCheckout): Promise<CheckoutAnswer> {
			let settledAnswer: CheckoutAnswer | undefined;
			const waiter = {
				settleParts: (st: Settlement, status: "COMPLETED" | "COMPENSATED", data: CheckoutData) => {
					const final = status === "COMPLETED" ? { status: "CONFIRMED", reason: null } : { status: "REJECTED", reason: failureReason(st.failure?.step ?? "unknown", st.failure?.error ?? {}) };
					const row = { ...s.row, status: final.status, failure_reason: final.reason, history: [...jsonColumn<any[]>(s.row.history, []), { status: final.status, at: st.now.toISOString() }] };
					settledAnswer = { statusCode: 201, body: publicOrder(row, sagaParts(data, status, st.failure)) };
					return [this.settlePart(st.p, cmd, { answer: settledAnswer }, st.requires)];
				},
			};
			const settled = this.waitForSaga(s.sagaId, config().CHECKOUT_WAIT_MS, waiter);
			if ("data" in s) this.startSaga("checkout", s.sagaId, s.data).catch((err: Error) => this.logger.error("Checkout saga interrupted; recovery will resume it", { orderId: s.row.id, sagaId: s.sagaId, err: err.message }));
			else if (!(await this.takeOverSaga(s.sagaId))) this.sagaSettled(s.sagaId, "ELSEWHERE");
			const status = await settled;
			if ((status === "COMPLETED" || status === "COMPENSATED") && settledAnswer) return settledAnswer;
			const current: any = await this.models.Order.findByPk(s.row.id, { raw: true });
			// Not settled here (still running, or settled elsewhere): what payments and fulfillment hold so far, one batched read.
			const now: CheckoutAnswer = { statusCode: current.status === "PENDING" ? 202 : 201, body: publicOrder(current, (await this.orderParts([current.id]))(current.id)) };
			return this.answerOf<CheckoutAnswer>(await this.settlePending(cmd, { answer: now }));
		},

		/** A repeat while the first answer is pending: in flight while its saga's lease is live; taken over when its driver died. */
		async checkoutRepeat(this: Svc, cmd: Command, ref: { orderId: string; sagaId: string }): Promise<CheckoutAnswer> {
			const state = await this.sagaState(ref.sagaId);
			const row: any = await this.models.Order.findByPk(ref.orderId, { raw: true });
			if (!state || state.status === "COMPLETED" || state.status === "COMPENSATED") {
				// The saga ended but the request that started it never answered (its node died): this is the first answer.
				const parts = (await this.orderParts([row.id]))(row.id);
				return this.answerOf<CheckoutAnswer>(await this.settlePending(cmd, { answer: { statusCode: row.status === "PENDING" ? 202 : 201, body: publicOrder(row, parts) } }));
			}
			if (state.leaseLive) throw new Errors.MoleculerClientError("A request with this key is still being processed", 409, "IDEMPOTENCY_KEY_IN_FLIGHT");
			if (state.status === "STUCK") return { statusCode: 202, body: publicOrder(row, (await this.orderParts([row.id]))(row.id)) };
			return this.awaitCheckout(cmd, { sagaId: ref.sagaId, row });
		},

		/** Waits for a saga driven here, or takes over one whose driver died; false when another live driver has it. */
		async followSaga(this: Svc, sagaId: string, ms: number): Promise<boolean> {
			if (this._sagaWaiters.has(sagaId)) return true;
			const state = await this.sagaState(sagaId);
			if (!state || !["RUNNING", "COMPENSATING", "STUCK"].includes(state.status)) return true;
			if (state.leaseLive) return false;
			const settled = this.waitForSaga(sagaId, ms);
			if (!(await this.takeOverSaga(sagaId))) {
				this.sagaSettled(sagaId, "ELSEWHERE");
				return false;
			}
			await settled;
			return true;
		},

		/**
		 * The order's last transition in a saga's final write: its status (conditional on the one
		 * it must come from), its history and its event.
		 */
		finalParts(this: Svc, s: Settlement, d: CancelData, status: string, reason: string | null, event: EventName, from: string): Part[] {
			const p = s.p;
			const entry = [{ status, at: s.now.toISOString() }];
			const history = this.sql.dialect === "postgres" ? `CAST(CAST(history AS jsonb) || CAST(${p.json(entry)} AS jsonb) AS json)` : `json_insert(history, '$[#]', json(${p.text(JSON.stringify(entry[0]))}))`;
			const data: OrderEventData = { orderId: d.orderId, customerId: d.customerId, status, items: d.items, total: d.total, failureReason: reason };
			return [
				{ name: "ord_final", sql: `UPDATE orders SET status = ${p.text(status)}, failure_reason = ${p.text(reason)}, history = ${history}, version = version + 1, updated_at = ${p.ts(s.now)} WHERE id = ${p.text(d.orderId)} AND status = ${p.text(from)} AND {guard} RETURNING id`, requires: s.requires },
				this.outboxPart(p, "outbox_order", [[event, data] as OutboxEvent], ["ord_final"]),
			];
		},

		/**
		 * Cancels a CONFIRMED order (customer's cancel, or a full refund before shipment): fulfillment
		 * refuses first once a parcel shipped (409 NOT_CANCELLABLE); then the cancellation saga voids or
		 * refunds what is left and releases the stock. `wait`: for the saga to settle, up to
		 * 2 × CHECKOUT_WAIT_MS (ms); 409 CANCELLATION_IN_PROGRESS when another node drives it.
		 * Answers the order row as it is after (still CONFIRMED when the saga has not finished).
		 */
		async cancelConfirmed(this: Svc, ctx: Context | null, o: any, wait: boolean) {
			const call = (action: string, params: Record<string, unknown>) => (ctx ? ctx.call(action, params) : this.broker.call(action, params));
			// Shipped parcels cannot be called back: the fulfillment service decides, before anything is undone.
			await call("fulfillment.cancel", { orderId: o.id, idempotencyKey: `${o.id}:cancel:fulfillment` });
			const sagaId = randomUUID();
			const data: CancelData = { orderId: o.id, customerId: o.customer_id, total: { amount: o.total, currency: o.currency }, items: this.eventData(o).items };
			// One cancellation per order: the order id is the key.
			const started = await this.command<{ sagaId: string; fresh?: boolean }>(
				{ scope: "cancel", name: "order.cancel", key: o.id, request: {} },
				async (p: Params) => ({ parts: [this.sagaPart(p, "cancel", sagaId, data)], outcome: { pending: { sagaId } }, result: { sagaId, fresh: true } }),
				{ pending: async (ref: any) => ({ sagaId: ref.sagaId }) },
			);
			const waitMs = 2 * config().CHECKOUT_WAIT_MS;
			if (started.fresh) {
				const settled = wait ? this.waitForSaga(sagaId, waitMs) : undefined;
				this.startSaga("cancel", sagaId, data).catch((err: Error) => this.logger.error("Cancellation interrupted; recovery will resume it", { orderId: o.id, sagaId, err: err.message }));
				await settled;
			} else if (wait && !(await this.followSaga(started.sagaId, waitMs))) {
				throw new ConflictError("The order is being cancelled", "CANCELLATION_IN_PROGRESS");
			}
			return this.models.Order.findByPk(o.id, { raw: true });
		},

		async ownOrder(this: Svc, ctx: Context<unknown, Meta>, id: string) {
			const o: any = await this.models.Order.findByPk(id, { raw: true });
			const user = callerOf(ctx);
			// Someone else's order does not exist, as far as a customer can tell.
			if (!o || (user.typ === "customer" && o.customer_id !== user.id)) throw new NotFoundError("Order", "ORDER_NOT_FOUND");
			return o;
		},

		eventData(o: any): OrderEventData {
			return { orderId: o.id, customerId: o.customer_id, status: o.status, items: jsonColumn<any[]>(o.items, []).map(i => ({ productId: i.productId, sku: i.sku, quantity: i.quantity })), total: { amount: o.total, currency: o.currency }, failureReason: o.failure_reason ?? null, version: Number(o.version ?? 0) };
		},
	},
};

export default OrdersService;
