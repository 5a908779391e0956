/**
 * Payments: authorize, capture, void and refund through a PaymentProvider (the simulated one by
 * default), with a state machine that refuses illegal moves and refunds beyond the capture — also
 * under concurrent refunds (conditional update).
 *
 * Each command is idempotent on the caller's key through IdempotencyMixin, the one mechanism: the
 * provider is called first with that same key (it honours it, as real providers do), then the
 * payment, the key's record and the events commit together — one statement on PostgreSQL. A
 * refund is recorded before it is sent (so concurrent refunds cannot overshoot) and sent again,
 * under its key, whenever its record answers a repeat. A compensation (void, refund) fences the
 * key of the step it undoes, so a late authorisation or capture takes no effect.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes } from "sequelize";
import { clampPaging } from "../../lib/catalog/query";
import type { Part, Runner } from "../../lib/db/sql";
import { ConflictError, NotFoundError, UnprocessableError } from "../../lib/errors";
import { tellOrder } from "../../lib/payments/reconcile";
import { PaymentsReconcilerMixin, reconcilerMigrations } from "./payments-reconciler.mixin";
import type { PaymentEventData } from "../../lib/events";
import { faultPoint } from "../../lib/faults";
import { recordPaymentDecline, recordRefund } from "../../lib/metrics";
import { ORDER_AMOUNT_RULE, widenMoneyColumns } from "../../lib/money";
import { type Money, PaymentDeclinedError, type PaymentProvider, SimulatedProvider, brandOf, freshProviderKey } from "../../lib/payments/provider";
import { PAYMENT_STATUSES, type PaymentStatus, assertMove, movableFrom, refundAmount, statusAfterRefund } from "../../lib/payments/state";
import { AccessMixin } from "../../mixins/access.mixin";
import { DbMixin, type DbMethods, type Migration } from "../../mixins/db.mixin";
import { IdempotencyMixin, type IdempotencyMethods, idempotencyMigrations } from "../../mixins/idempotency.mixin";
import { OutboxMixin, type OutboxMethods, outboxMigrations } from "../../mixins/outbox.mixin";
import { COMMAND_TIMEOUT_MS } from "../../lib/command-timeouts";

const migrations: Migration[] = [
	{
		name: "001-payments",
		async up(qi, T) {
			await qi.createTable("payments", {
				id: { type: T.STRING(36), primaryKey: true },
				order_id: { type: T.STRING(36), allowNull: false },
				status: { type: T.STRING(20), allowNull: false },
				amount: { type: T.INTEGER, allowNull: false },
				currency: { type: T.STRING(3), allowNull: false },
				captured: { type: T.INTEGER, allowNull: false, defaultValue: 0 },
				refunded: { type: T.INTEGER, allowNull: false, defaultValue: 0 },
				provider_ref: { type: T.STRING(100), allowNull: true },
				failure: { type: T.STRING(40), allowNull: true },
				created_at: { type: T.DATE(3), allowNull: false },
				updated_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("payments", ["order_id"]);
		},
	},
	...idempotencyMigrations,
	...outboxMigrations,
	{
		name: "002-payment-operations",
		async up(qi, T) {
			await qi.addColumn("payments", "brand", { type: T.STRING(20), allowNull: true });
			await qi.createTable("payment_operations", {
				idempotency_key: { type: T.STRING(255), primaryKey: true },
				operation: { type: T.STRING(16), allowNull: false },
				payment_id: { type: T.STRING(36), allowNull: true },
				result: { type: T.JSON, allowNull: true },
				error: { type: T.JSON, allowNull: true },
				created_at: { type: T.DATE(3), allowNull: false },
			});
		},
	},
	{
		name: "i9-001-money-bigint",
		async up(qi) {
			await widenMoneyColumns(qi, "payments", ["amount", "captured", "refunded"]);
		},
	},
	{
		name: "i7-003-payment-operations-go",
		async up(qi) {
			// Idempotency is the key table's alone (mixins/idempotency.mixin.ts); the operations table was a second copy.
			await qi.dropTable("payment_operations");
		},
	},
	...reconcilerMigrations,
];

type Svc = Service & DbMethods & OutboxMethods & IdempotencyMethods & { provider: PaymentProvider; [k: string]: any };

const money = { type: "object", strict: true, props: { amount: ORDER_AMOUNT_RULE, currency: { type: "equal", value: "USD" } } };
const orderId = "string|min:1|max:36";
const key = "string|min:1|max:255";
/** The key of the step a compensation undoes (the saga sends it): fenced so that the step cannot arrive late. */
const stepKey = "string|min:1|max:255|optional";

interface PaymentRow {
	id: string;
	order_id: string;
	status: PaymentStatus;
	amount: number;
	currency: string;
	captured: number;
	refunded: number;
	provider_ref: string | null;
	brand?: string | null;
	created_at?: Date | string;
}

/** What a refund did, kept in its record so that a repeat sends the same refunds to the provider again. */
interface RefundAnswer {
	refunded: number;
	sends: { paymentId: string; reference: string; amount: number; currency: string }[];
}

function publicPayment(p: any) {
	return { id: p.id, orderId: p.order_id, status: p.status as PaymentStatus, amount: { amount: Number(p.amount), currency: p.currency }, captured: { amount: Number(p.captured), currency: p.currency }, refunded: { amount: Number(p.refunded), currency: p.currency }, brand: p.brand ?? null, createdAt: new Date(p.created_at).toISOString() };
}

function eventData(row: Pick<PaymentRow, "id" | "order_id" | "amount" | "currency" | "status">): PaymentEventData {
	return { paymentId: row.id, orderId: row.order_id, amount: { amount: Number(row.amount), currency: row.currency }, status: row.status };
}

const PaymentsService: ServiceSchema<any, any, any, Svc> = {
	name: "payments",
	mixins: [
		DbMixin({
			name: "payments",
			migrations,
			models: s => ({
				Payment: s.define(
					"Payment",
					{
						id: { type: DataTypes.STRING(36), primaryKey: true },
						order_id: DataTypes.STRING(36),
						status: DataTypes.STRING(20),
						amount: DataTypes.INTEGER,
						currency: DataTypes.STRING(3),
						captured: DataTypes.INTEGER,
						refunded: DataTypes.INTEGER,
						provider_ref: DataTypes.STRING(100),
						brand: DataTypes.STRING(20),
						failure: DataTypes.STRING(40),
						created_at: DataTypes.DATE(3),
						updated_at: DataTypes.DATE(3),
					},
					{ tableName: "payments", timestamps: false },
				),
			}),
		}),
		IdempotencyMixin,
		OutboxMixin,
		AccessMixin,
		PaymentsReconcilerMixin,
	],

	settings: { slowTokenMs: 2000 },

	actions: {
		/** Saga step 1: holds the total on the card. A decline is stored as the key's answer (402) with a FAILED payment. */
		authorize: {
			timeout: COMMAND_TIMEOUT_MS["payments.authorize"],
			params: { orderId, amount: money, paymentToken: "string|min:1|max:100", idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; amount: Money; paymentToken: string; idempotencyKey: string }>) {
				const { idempotencyKey, ...request } = ctx.params;
				let reference: string | undefined;
				return this.command(
					{ scope: "payments", name: "authorize", key: idempotencyKey, request: { op: "authorize", ...request } },
					async p => {
						const now = new Date();
						const row = { id: randomUUID(), order_id: request.orderId, status: "AUTHORIZED" as PaymentStatus, amount: request.amount.amount, currency: request.amount.currency, failure: null as string | null };
						let refusal: PaymentDeclinedError | undefined;
						try {
							({ reference } = await this.provider.authorize(request.paymentToken, request.amount, idempotencyKey));
						} catch (err) {
							// An unknown token (422) writes nothing; a decline is kept as a FAILED payment and the key's answer.
							if (!(err instanceof PaymentDeclinedError)) throw err;
							refusal = err;
							recordPaymentDecline(String(err.type));
							Object.assign(row, { status: "FAILED", failure: err.type });
						}
						faultPoint("payments.authorize.afterProvider");
						return {
							parts: [
								{
									name: "pay",
									sql: `INSERT INTO payments (id, order_id, status, amount, currency, captured, refunded, provider_ref, brand, failure, created_at, updated_at)
									      VALUES (${p.text(row.id)}, ${p.text(row.order_id)}, ${p.text(row.status)}, ${p.int(row.amount)}, ${p.text(row.currency)}, 0, 0, ${p.text(reference ?? null)}, ${p.text(brandOf(request.paymentToken))}, ${p.text(row.failure)}, ${p.ts(now)}, ${p.ts(now)}) RETURNING id`,
								},
								this.outboxPart(p, "outbox", [[refusal ? "payments.payment.failed" : "payments.payment.authorized", eventData(row)]], ["pay"]),
							],
							// providerRef: what capture needs (the saga carries it there, so capture reads nothing first).
							outcome: refusal ? { refusal } : { answer: { paymentId: row.id, status: "AUTHORIZED", providerRef: reference ?? null } },
						};
					},
					{
						// A late call finding the saga's void there: no hold may stay open at the provider for it.
						lost: async stored => {
							if (reference && stored.code !== 0) await this.provider.void(reference, `${idempotencyKey}:superseded`);
						},
					},
				);
			},
		},

		/**
		 * Saga step 4. A refused capture (402 CAPTURE_FAILED) leaves the authorisation open, for the saga to void.
		 *
		 * `{ orderId, idempotencyKey, payment?: { id, providerRef, amount: { amount (cents), currency } } }`
		 * → `{ paymentId, status: "CAPTURED" }`. `payment` is what authorize answered (the saga carries
		 * it, issue 7): with it the first attempt calls the provider and writes the one conditional
		 * UPDATE … WHERE id AND order_id AND amount AND status = 'AUTHORIZED', without reading the
		 * payment first. Without it (sagas begun before), or when that attempt cannot apply (the payment
		 * changed meanwhile, a wrong hint, a provider error), it reads the payment as before, so the
		 * answers stay the same: 409 NO_OPEN_PAYMENT / ILLEGAL_PAYMENT_TRANSITION, 402 CAPTURE_FAILED,
		 * and a repeat of the key gets the stored answer. `payment` is not part of the key's request.
		 */
		capture: {
			timeout: COMMAND_TIMEOUT_MS["payments.capture"],
			params: {
				orderId,
				idempotencyKey: key,
				payment: { type: "object", optional: true, strict: true, props: { id: "string|min:1|max:36", providerRef: "string|min:1|max:100", amount: money } },
			},
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string; payment?: { id: string; providerRef: string; amount: Money } }>) {
				const { idempotencyKey, payment: hint, ...request } = ctx.params;
				let sent: Pick<PaymentRow, "provider_ref" | "amount" | "currency"> | undefined;
				let hinted = hint !== undefined;
				return this.command(
					{ scope: "payments", name: "capture", key: idempotencyKey, request: { op: "capture", ...request } },
					async p => {
						let pay: Pick<PaymentRow, "id" | "order_id" | "status" | "amount" | "currency" | "provider_ref"> | undefined;
						if (hinted) {
							// Only the first attempt trusts the hint; a refused write plans once more, reading.
							hinted = false;
							const row = { id: hint!.id, order_id: request.orderId, status: "AUTHORIZED" as PaymentStatus, amount: hint!.amount.amount, currency: hint!.amount.currency, provider_ref: hint!.providerRef };
							try {
								await this.provider.capture(row.provider_ref, hint!.amount, idempotencyKey);
								pay = row;
								sent = row;
							} catch {
								// The read path below decides what this is (captured already, voided, refused by the provider).
							}
						}
						if (!pay) {
							[pay] = await this.sql.select<PaymentRow>(
								"SELECT id, order_id, status, amount, currency, provider_ref FROM payments WHERE order_id = $1 AND status <> 'FAILED' ORDER BY created_at DESC LIMIT 1",
								[request.orderId],
							);
							if (!pay) throw new ConflictError("The order has no authorised payment", "NO_OPEN_PAYMENT");
							if (pay.status !== "CAPTURED") {
								assertMove("capture", pay.status);
								await this.provider.capture(pay.provider_ref!, { amount: Number(pay.amount), currency: pay.currency }, idempotencyKey);
								sent = pay;
							}
						}
						faultPoint("payments.capture.afterProvider");
						const id = p.text(pay.id);
						// The row must be the order's, of the amount the provider was asked for (a hint is checked here).
						const mine = `order_id = ${p.text(pay.order_id)} AND amount = ${p.add(Number(pay.amount))} AND currency = ${p.text(pay.currency)}`;
						const captured = `EXISTS (SELECT 1 FROM payments WHERE id = ${id} AND ${mine} AND status = 'CAPTURED')`;
						return {
							parts: [
								{ name: "cap", sql: `UPDATE payments SET status = 'CAPTURED', captured = amount, updated_at = ${p.ts(new Date())} WHERE id = ${id} AND ${mine} AND status = 'AUTHORIZED' RETURNING id` },
								this.outboxPart(p, "outbox", [["payments.payment.captured", eventData({ ...pay, status: "CAPTURED" })]], ["cap"]),
							],
							outcome: { answer: { paymentId: pay.id, status: "CAPTURED" } },
							// Captured now, or before under another key (the same outcome); anything else changed meanwhile.
							keyWhen: this.sql.dialect === "postgres" ? `(EXISTS (SELECT 1 FROM cap) OR ${captured})` : captured,
							refused: () => new ConflictError("The payment changed while it was being captured", "ILLEGAL_PAYMENT_TRANSITION"),
						};
					},
					{
						lost: async stored => {
							if (sent && stored.code !== 0) await this.provider.refund(sent.provider_ref!, { amount: Number(sent.amount), currency: sent.currency }, `${idempotencyKey}:superseded`);
						},
					},
				);
			},
		},

		/** Voids the order's open authorisations (saga compensation of authorize); nothing to void is not an error. */
		void: {
			timeout: COMMAND_TIMEOUT_MS["payments.void"],
			params: { orderId, idempotencyKey: key, stepKey },
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string; stepKey?: string }>) {
				const { idempotencyKey, stepKey: fenced, ...request } = ctx.params;
				return this.commandTx(
					{ scope: "payments", name: "void", key: idempotencyKey, request: { op: "void", ...request } },
					async (r: Runner) => {
						// After the fence no authorisation of the saga can appear any more: void what is there.
						const open = await r.query<PaymentRow>(
							`SELECT id, order_id, status, amount, currency, provider_ref FROM payments WHERE order_id = $1 AND status = 'AUTHORIZED' ORDER BY created_at${r.dialect === "postgres" ? " FOR UPDATE" : ""}`,
							[request.orderId],
						);
						let voided = 0;
						for (const pay of open) {
							// At the provider inside the transaction: a void answers at once (an authorisation, which may not, never runs in one).
							await this.provider.void(pay.provider_ref!, `${idempotencyKey}:${pay.id}`);
							const p = this.sql.params();
							const rows = await r.write(
								[
									{ name: "vd", sql: `UPDATE payments SET status = 'VOIDED', updated_at = ${p.ts(new Date())} WHERE id = ${p.text(pay.id)} AND status = 'AUTHORIZED' RETURNING id` },
									this.outboxPart(p, "outbox", [["payments.payment.voided", eventData({ ...pay, status: "VOIDED" })]], ["vd"]),
								],
								p,
							);
							voided += rows.vd.length;
						}
						return { answer: { voided } };
					},
					{ fence: fenced ? { scope: "payments", key: fenced } : undefined },
				);
			},
		},

		/** Refunds captured money of the order (all of it unless `amount`); never more than captured. */
		refund: {
			timeout: COMMAND_TIMEOUT_MS["payments.refund"],
			params: { orderId, amount: `${ORDER_AMOUNT_RULE}|optional`, idempotencyKey: key, stepKey },
			async handler(this: Svc, ctx: Context<{ orderId: string; amount?: number; idempotencyKey: string; stepKey?: string }>) {
				const { idempotencyKey, stepKey: fenced, ...request } = ctx.params;
				const done = await this.commandTx<RefundAnswer>(
					{ scope: "payments", name: "refund", key: idempotencyKey, request: { op: "refund", ...request } },
					async (r: Runner) => {
						const paid = await r.query<PaymentRow>(
							`SELECT id, order_id, status, amount, currency, captured, refunded, provider_ref FROM payments WHERE order_id = $1 AND status IN ('CAPTURED', 'PARTIALLY_REFUNDED') ORDER BY created_at${r.dialect === "postgres" ? " FOR UPDATE" : ""}`,
							[request.orderId],
						);
						const left = paid.reduce((n, x) => n + Number(x.captured) - Number(x.refunded), 0);
						if (request.amount !== undefined && request.amount > left) throw new ConflictError(`Refund of ${request.amount} exceeds the ${left} left to refund`, "REFUND_EXCEEDS_CAPTURE", { left });
						let wanted = request.amount ?? left;
						const sends: RefundAnswer["sends"] = [];
						for (const pay of paid) {
							const a = Math.min(wanted, Number(pay.captured) - Number(pay.refunded));
							if (a <= 0) continue;
							await this.applyRefund(r, pay, a);
							sends.push({ paymentId: pay.id, reference: pay.provider_ref!, amount: a, currency: pay.currency });
							wanted -= a;
						}
						return { answer: { refunded: sends.reduce((n, x) => n + x.amount, 0), sends } };
					},
					{ fence: fenced ? { scope: "payments", key: fenced } : undefined },
				);
				// Recorded first, sent after the commit — and sent again (same key) by every repeat, so a crash between cannot lose it.
				for (const s of done.sends) await this.providerRefund(s, `${idempotencyKey}:${s.paymentId}`);
				return { refunded: done.refunded };
			},
		},

		byOrder: {
			params: { orderId },
			async handler(this: Svc, ctx: Context<{ orderId: string }>) {
				const rows: any[] = await this.models.Payment.findAll({ where: { order_id: ctx.params.orderId }, order: [["created_at", "ASC"], ["id", "ASC"]], raw: true });
				return rows.map(p => ({ id: p.id, status: p.status, amount: p.amount, captured: p.captured, refunded: p.refunded }));
			},
		},

		/**
		 * The payments of up to 100 orders in one read (the orders lists, API.md "the same shape in
		 * lists"): `{ orderIds: string[] ≤ 100 }` → `{ [orderId]: [{ id, status, amount, captured, refunded }] }`
		 * (cents), each list oldest first like `byOrder`; an order without payments maps to []. Internal
		 * like `byOrder` (no `auth`, not published by the gateway); 422 on a bad list.
		 */
		byOrders: {
			params: { orderIds: { type: "array", max: 100, items: orderId } },
			async handler(this: Svc, ctx: Context<{ orderIds: string[] }>) {
				const ids = [...new Set(ctx.params.orderIds)];
				const out: Record<string, { id: string; status: string; amount: number; captured: number; refunded: number }[]> = Object.fromEntries(ids.map(id => [id, []]));
				if (!ids.length) return out;
				// Sequelize turns the array into `order_id IN (…)`, parameterised.
				const rows: any[] = await this.models.Payment.findAll({ where: { order_id: ids }, order: [["created_at", "ASC"], ["id", "ASC"]], raw: true });
				for (const p of rows) out[p.order_id].push({ id: p.id, status: p.status, amount: p.amount, captured: p.captured, refunded: p.refunded });
				return out;
			},
		},

		list: {
			auth: "admin",
			params: { orderId: "string|min:1|max:36|optional", status: { type: "enum", values: [...PAYMENT_STATUSES], optional: true }, page: "number|integer|convert|optional", pageSize: "number|integer|convert|optional" },
			async handler(this: Svc, ctx: Context<{ orderId?: string; status?: PaymentStatus; page?: number; pageSize?: number }>) {
				const { page, pageSize, offset } = clampPaging(ctx.params.page, ctx.params.pageSize);
				const where: Record<string, string> = {};
				if (ctx.params.orderId) where.order_id = ctx.params.orderId;
				if (ctx.params.status) where.status = ctx.params.status;
				const { rows, count } = await this.models.Payment.findAndCountAll({ where, order: [["created_at", "DESC"], ["id", "ASC"]], limit: pageSize, offset, raw: true });
				return { items: rows.map(publicPayment), total: count, page, pageSize };
			},
		},

		/** An operator's refund (API.md: no idempotency key, so every call is a refund of its own). */
		adminRefund: {
			auth: "admin",
			roles: ["support"],
			params: { id: "string|min:1|max:36", amount: `${ORDER_AMOUNT_RULE}|optional` },
			async handler(this: Svc, ctx: Context<{ id: string; amount?: number | null }>) {
				// API.md: only an absent amount means "the rest"; null is refused like 0 or a negative amount.
				if (ctx.params.amount === null) throw new UnprocessableError("amount must be a positive number of cents, or absent for the rest", "VALIDATION_ERROR", [{ field: "amount", message: "must not be null" }]);
				const refundId = randomUUID();
				const send = await this.sql.transaction(async (r: Runner) => {
					const [row] = await r.query<PaymentRow>(
						`SELECT id, order_id, status, amount, currency, captured, refunded, provider_ref FROM payments WHERE id = $1${r.dialect === "postgres" ? " FOR UPDATE" : ""}`,
						[ctx.params.id],
					);
					if (!row) throw new NotFoundError("Payment", "PAYMENT_NOT_FOUND");
					assertMove("refund", row.status);
					const a = refundAmount(Number(row.captured), Number(row.refunded), ctx.params.amount ?? undefined);
					const rows = await this.applyRefund(r, row, a, { refundId, operator: true });
					r.transaction!.afterCommit(() => this.outboxWritten(rows));
					return { paymentId: row.id, reference: row.provider_ref!, amount: a, currency: row.currency };
				});
				await this.providerRefund(send, freshProviderKey(`admin-refund:${send.paymentId}`));
				const after: any = await this.models.Payment.findByPk(send.paymentId, { raw: true });
				// The order follows before the operator gets the answer (cancelled, or the refund recorded); its event converges it too.
				await tellOrder(ctx, this.logger, { orderId: after.order_id, refundId, refundAmount: send.amount, fullyRefunded: after.status === "REFUNDED", occurredAt: new Date().toISOString() });
				return publicPayment(after);
			},
		},
	},

	methods: {
		/**
		 * Adds `amount` to the refunded sum and records the event, in one write; the database
		 * refuses a refund beyond the capture whatever runs concurrently (409 REFUND_EXCEEDS_CAPTURE).
		 */
		async applyRefund(this: Svc, r: Runner, pay: PaymentRow, amount: number, operator?: { refundId: string; operator: true }): Promise<Record<string, any[]>> {
			const p = this.sql.params();
			const a = p.int(amount);
			const status = statusAfterRefund(Number(pay.captured), Number(pay.refunded) + amount);
			const parts: Part[] = [
				{
					name: "rf",
					sql: `UPDATE payments SET refunded = refunded + ${a}, status = CASE WHEN refunded + ${a} >= captured THEN 'REFUNDED' ELSE 'PARTIALLY_REFUNDED' END, updated_at = ${p.ts(new Date())}
					      WHERE id = ${p.text(pay.id)} AND status IN (${movableFrom("refund").map(s => p.text(s)).join(", ")}) AND captured - refunded >= ${a} RETURNING id`,
				},
				this.outboxPart(p, "outbox", [["payments.payment.refunded", { ...eventData({ ...pay, status }), amount: { amount, currency: pay.currency }, refundAmount: amount, fullyRefunded: status === "REFUNDED", ...operator }]], ["rf"]),
			];
			const rows = await r.write(parts, p);
			if (!rows.rf.length) throw new ConflictError(`Refund of ${amount} exceeds what is left to refund`, "REFUND_EXCEEDS_CAPTURE");
			// Counted once, when the refund is recorded (not when a repeat sends it to the provider again).
			const count = () => recordRefund(amount, pay.currency);
			if (r.transaction) r.transaction.afterCommit(count);
			else count();
			return rows;
		},

		/** Sends a recorded refund to the provider under its key; a provider that refuses is loud (an operator must look). */
		async providerRefund(this: Svc, s: RefundAnswer["sends"][number], providerKey: string) {
			try {
				await this.provider.refund(s.reference, { amount: s.amount, currency: s.currency }, providerKey);
			} catch (err) {
				this.logger.error("Provider refused a recorded refund; needs an operator", { paymentId: s.paymentId, amount: s.amount, error: (err as Error).message });
				throw err;
			}
		},
	},

	created(this: Svc) {
		this.provider = new SimulatedProvider(this.settings.slowTokenMs);
	},
};

export default PaymentsService;
