/**
 * The order's status after checkout, from what fulfillment and payments report (issue 8): shipped,
 * delivered, and operators' refunds. Both the events (`fulfillment.fulfillment.shipped` /
 * `.delivered`, `payments.payment.refunded`) and the synchronous calls beside them (`markShipped`,
 * `markDelivered`, `refundApplied`, made by fulfillment and payments so that the order reads the new
 * state when the operator's request answers — docs/EVENTS.md "Read-your-writes") apply the same
 * convergent rules (lib/orders/transitions.ts) to the order's row, locked (PostgreSQL `FOR UPDATE`)
 * and updated on its version, so whichever comes first, twice or concurrently, the order ends the same.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, type Transaction } from "sequelize";
import { Errors } from "moleculer";
import { config } from "../../config";
import type { EventName } from "../../lib/events";
import { type FulfillmentFact, type OrderRefund, type OrderStatus, decideFulfillmentFact, decideRefund } from "../../lib/orders/transitions";
import { type DbMethods, type Migration, jsonColumn } from "../../mixins/db.mixin";
import type { OutboxMethods } from "../../mixins/outbox.mixin";

/** The order is not in a state where the fact can apply yet, or changed under us: try again later (the bus redelivers). */
export class OrderNotReadyError extends Errors.MoleculerRetryableError {
	constructor(orderId: string, reason: string) {
		super(`Order ${orderId}: ${reason}; will retry`, 409, "ORDER_NOT_READY", { orderId });
		this.name = "OrderNotReadyError";
	}
}

export const orderStateMigrations: Migration[] = [
	{
		name: "i8-001-order-version-refunds",
		async up(qi, T) {
			// version: bumped by every status change, carried by the order's events (consumers keep the newest).
			await qi.addColumn("orders", "version", { type: T.INTEGER, allowNull: false, defaultValue: 0 });
			// Operators' refunds recorded on the order (API.md: refunds, refundedTotal), in cents.
			await qi.addColumn("orders", "refunds", { type: T.JSON, allowNull: true });
			await qi.addColumn("orders", "refunded_total", { type: T.BIGINT, allowNull: false, defaultValue: 0 });
		},
	},
];

export const orderStateColumns = {
	version: DataTypes.INTEGER,
	refunds: DataTypes.JSON,
	refunded_total: DataTypes.BIGINT,
};

/** What the order shows of its refunds (API.md): `refunds: [{ amount, at }]`, `refundedTotal`, both money. */
export function orderStateView(o: any) {
	const refunds = jsonColumn<OrderRefund[]>(o.refunds, []) ?? [];
	return {
		refunds: refunds.map(r => ({ amount: { amount: Number(r.amount), currency: o.currency }, at: r.at })),
		refundedTotal: { amount: Number(o.refunded_total ?? 0), currency: o.currency },
	};
}

const STATUS_EVENTS: Partial<Record<OrderStatus, EventName>> = { SHIPPED: "orders.order.shipped", DELIVERED: "orders.order.delivered" };

/** An operator's refund as payments reports it (event payload or synchronous call). */
export interface RefundReport {
	orderId: string;
	refundId?: string;
	/** Cents refunded by this refund. */
	refundAmount?: number;
	fullyRefunded?: boolean;
	operator?: boolean;
	occurredAt?: string;
}

type Svc = Service &
	DbMethods &
	OutboxMethods & {
		eventData(o: any): any;
		cancelConfirmed(ctx: Context | null, o: any, wait: boolean): Promise<any>;
		applyFulfillmentFact(orderId: string, fact: FulfillmentFact, t?: Transaction): Promise<{ orderId: string; status: string }>;
		applyOperatorRefund(r: RefundReport, t?: Transaction, ctx?: Context): Promise<{ orderId: string; status: string; outcome: string }>;
		withOrderLocked<T>(outer: Transaction | undefined, fn: (t: Transaction) => Promise<T>): Promise<T>;
		settledStatus(orderId: string): Promise<string>;
	};

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

export const OrderStateMixin = {
	actions: {
		/**
		 * Fulfillment's synchronous call when a parcel ships: the order reads SHIPPED when `ship`
		 * answers. Idempotent; `{ orderId, status }`. 409 ORDER_NOT_READY (retryable) while PENDING.
		 */
		markShipped: {
			params: { orderId: "string|max:36" },
			handler(this: Svc, ctx: Context<{ orderId: string }>) {
				return this.applyFulfillmentFact(ctx.params.orderId, { kind: "shipped" });
			},
		},

		/** Fulfillment's synchronous call after a delivery; `orderComplete` when every live parcel is delivered. */
		markDelivered: {
			params: { orderId: "string|max:36", orderComplete: { type: "boolean", default: true } },
			handler(this: Svc, ctx: Context<{ orderId: string; orderComplete: boolean }>) {
				return this.applyFulfillmentFact(ctx.params.orderId, { kind: "delivered", orderComplete: ctx.params.orderComplete });
			},
		},

		/**
		 * Payments' synchronous call after an operator's refund (API.md, POST /admin/payments/:id/refund):
		 * a full refund of a CONFIRMED order cancels it (waits for the cancellation); otherwise the refund
		 * is recorded on the order once. `{ orderId, status, outcome }`.
		 */
		refundApplied: {
			params: { orderId: "string|max:36", refundId: "string|max:64", refundAmount: "number|integer|positive", fullyRefunded: "boolean", occurredAt: "string|max:40" },
			handler(this: Svc, ctx: Context<RefundReport>) {
				return this.applyOperatorRefund({ ...ctx.params, operator: true }, undefined, ctx);
			},
		},
		/**
		 * The customer's first DELIVERED order containing the product (`{ orderId }` or `{ orderId: null }`):
		 * reviews asks when its eligibility (built from `orders.order.delivered`) has not caught up yet, so a
		 * buyer may review as soon as the last `deliver` answered (API.md, NOT_A_BUYER).
		 */
		deliveredContaining: {
			params: { customerId: "string|max:36", productId: "string|max:36" },
			async handler(this: Svc, ctx: Context<{ customerId: string; productId: string }>) {
				const rows: any[] = await this.models.Order.findAll({ where: { customer_id: ctx.params.customerId, status: "DELIVERED" }, attributes: ["id", "items"], order: [["id", "ASC"]], raw: true });
				const hit = rows.find(o => (jsonColumn<any[]>(o.items, []) ?? []).some(i => i.productId === ctx.params.productId));
				return { orderId: hit?.id ?? null };
			},
		},

		/** The statuses of these orders, `{ [orderId]: status }` (unknown ids left out): what the payments reconciler compares with. */
		statuses: {
			params: { ids: { type: "array", items: "string|max:36", max: 1000 } },
			async handler(this: Svc, ctx: Context<{ ids: string[] }>) {
				if (!ctx.params.ids.length) return {};
				const rows: any[] = await this.models.Order.findAll({ where: { id: ctx.params.ids }, attributes: ["id", "status"], raw: true });
				return Object.fromEntries(rows.map(r => [r.id, r.status]));
			},
		},
	},

	methods: {
		/** Runs `fn` in `outer`, or in transactions of its own, again while the order changed under it (a few times). */
		async withOrderLocked<T>(this: Svc, outer: Transaction | undefined, fn: (t: Transaction) => Promise<T>): Promise<T> {
			if (outer) return fn(outer);
			for (let attempt = 1; ; attempt++) {
				try {
					return await this.transaction(fn);
				} catch (err) {
					if (!(err instanceof OrderNotReadyError) || String(err.message).includes("not confirmed") || attempt >= 5) throw err;
					await sleep(20 * attempt);
				}
			}
		},

		/** The order's status once it has left CONFIRMED, or as it is after 2 × CHECKOUT_WAIT_MS (a cancellation driven elsewhere). */
		async settledStatus(this: Svc, orderId: string): Promise<string> {
			const until = Date.now() + 2 * config().CHECKOUT_WAIT_MS;
			for (;;) {
				const o: any = await this.models.Order.findByPk(orderId, { attributes: ["status"], raw: true });
				if (o.status !== "CONFIRMED" || Date.now() > until) return o.status;
				await sleep(50);
			}
		},

		/** Applies a shipped/delivered fact (lib/orders/transitions.ts) to the locked order row, with the events of every status entered. */
		async applyFulfillmentFact(this: Svc, orderId: string, fact: FulfillmentFact, outer?: Transaction) {
			return this.withOrderLocked(outer, async t => {
				const o: any = await this.models.Order.findByPk(orderId, { transaction: t, lock: t.LOCK.UPDATE, raw: true });
				if (!o) {
					this.logger.warn("Fulfillment fact for an unknown order; nothing to change", { orderId, fact: fact.kind });
					return { orderId, status: "UNKNOWN" };
				}
				const d = decideFulfillmentFact(o.status, fact, new Date().toISOString());
				if (d.kind === "retry") throw new OrderNotReadyError(orderId, d.reason);
				if (d.kind === "noop") return { orderId, status: o.status as string };
				const version = Number(o.version ?? 0);
				const history = [...jsonColumn<any[]>(o.history, []), ...d.entries];
				const [n] = await this.models.Order.update({ status: d.status, history, version: version + d.entries.length, updated_at: new Date() }, { where: { id: orderId, version }, transaction: t });
				if (!n) throw new OrderNotReadyError(orderId, "changed concurrently");
				for (const [i, e] of d.entries.entries()) {
					await this.recordEvent(t, STATUS_EVENTS[e.status as OrderStatus]!, this.eventData({ ...o, status: e.status, version: version + i + 1 }));
				}
				return { orderId, status: d.status as string };
			});
		},

		/**
		 * An operator's refund (payments' `refundApplied` call or its `payments.payment.refunded`
		 * event; refunds of sagas carry no `operator` flag and change nothing here). Records it on the
		 * order once, or cancels a CONFIRMED order that was refunded in full: waiting for the
		 * cancellation when called (`ctx`), after the commit of the event's transaction otherwise.
		 * A full refund that meets a parcel already shipped is recorded instead (the order keeps its status).
		 */
		async applyOperatorRefund(this: Svc, r: RefundReport, outer?: Transaction, ctx?: Context) {
			if (!r.operator || !r.refundId || !r.refundAmount) return { orderId: r.orderId, status: "UNCHANGED", outcome: "ignored" };
			const refund: OrderRefund = { refundId: r.refundId, amount: r.refundAmount, at: r.occurredAt ?? new Date().toISOString() };
			const record = (t: Transaction, o: any, refunds: OrderRefund[], total: number) =>
				this.models.Order.update({ refunds, refunded_total: total, version: Number(o.version ?? 0) + 1, updated_at: new Date() }, { where: { id: o.id, version: Number(o.version ?? 0) }, transaction: t });
			const decided = await this.withOrderLocked(outer, async t => {
				const o: any = await this.models.Order.findByPk(r.orderId, { transaction: t, lock: t.LOCK.UPDATE, raw: true });
				if (!o) {
					this.logger.warn("Operator refund for an order unknown here; nothing to record", { orderId: r.orderId, refundId: r.refundId });
					return { o: { status: "UNKNOWN" }, kind: "noop" as const };
				}
				const d = decideRefund(o.status, jsonColumn<OrderRefund[]>(o.refunds, []) ?? [], refund, Boolean(r.fullyRefunded));
				if (d.kind === "retry") throw new OrderNotReadyError(r.orderId, d.reason);
				if (d.kind === "record") {
					const [n] = await record(t, o, d.refunds, d.refundedTotal);
					if (!n) throw new OrderNotReadyError(r.orderId, "changed concurrently");
				}
				return { o, kind: d.kind };
			});
			if (decided.kind !== "cancel") return { orderId: r.orderId, status: decided.o.status, outcome: decided.kind };
			const cancel = async () => {
				try {
					const after = await this.cancelConfirmed(ctx ?? null, decided.o, Boolean(ctx));
					this.logger.info("Order cancelled by a full refund before shipment", { orderId: r.orderId, refundId: r.refundId });
					return { orderId: r.orderId, status: after.status as string, outcome: "cancel" };
				} catch (err) {
					// The refund's event got there first and its cancellation runs: the caller waits for it.
					if ((err as any)?.type === "CANCELLATION_IN_PROGRESS") return { orderId: r.orderId, status: await this.settledStatus(r.orderId), outcome: "cancel" };
					if ((err as any)?.type !== "NOT_CANCELLABLE") throw err;
					// A parcel shipped meanwhile: the refund is recorded on the order, which keeps its status.
					return this.withOrderLocked(undefined, async t => {
						const o: any = await this.models.Order.findByPk(r.orderId, { transaction: t, lock: t.LOCK.UPDATE, raw: true });
						const refunds = jsonColumn<OrderRefund[]>(o.refunds, []) ?? [];
						if (!refunds.some(x => x.refundId === refund.refundId)) {
							const next = [...refunds, refund];
							await record(t, o, next, next.reduce((n, x) => n + x.amount, 0));
						}
						return { orderId: r.orderId, status: o.status as string, outcome: "record" };
					});
				}
			};
			if (ctx) return cancel();
			// In an event's transaction: once it commits (the cancellation's own writes cannot wait inside it).
			outer?.afterCommit(() => {
				cancel().catch(err => this.logger.error("Cancellation after a full refund failed; the payments reconciler reports it", { orderId: r.orderId, refundId: r.refundId, err: (err as Error).message }));
			});
			return { orderId: r.orderId, status: decided.o.status, outcome: "cancel" };
		},
	},
} as unknown as Partial<ServiceSchema>;
