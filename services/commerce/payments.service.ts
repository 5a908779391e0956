/**
 * Payments: authorize, capture, void and refund through a PaymentProvider (the simulated one by
 * default), each idempotent on the caller's key, with a state machine that refuses illegal moves
 * and refunds beyond the capture — also under concurrent refunds (conditional update).
 *
 * Idempotency has two layers: IdempotencyMixin answers repeats and concurrent callers of a key
 * (one runs, the others wait for its answer), and `payment_operations` records each key in the
 * very transaction of its effect, so even a rerun after a lost answer never acts twice.
 */
import { randomUUID } from "node:crypto";
import { type Context, Errors, type Service, type ServiceSchema } from "moleculer";
import { DataTypes, Op, type Transaction } from "sequelize";
import { clampPaging } from "../../lib/catalog/query";
import { ConflictError, NotFoundError, UnprocessableError } from "../../lib/errors";
import { recordPaymentDecline, recordRefund } from "../../lib/metrics";
import type { PaymentEventData } from "../../lib/events";
import { ORDER_AMOUNT_RULE, widenMoneyColumns } from "../../lib/money";
import { type Money, PaymentDeclinedError, type PaymentProvider, SimulatedProvider, brandOf } from "../../lib/payments/provider";
import { PAYMENT_STATUSES, type PaymentStatus, assertMove, movableFrom, refundAmount } from "../../lib/payments/state";
import { AccessMixin } from "../../mixins/access.mixin";
import { DbMixin, type DbMethods, type Migration, jsonColumn } from "../../mixins/db.mixin";
import { IdempotencyMixin, type IdempotencyMethods, idempotencyMigrations } from "../../mixins/idempotency.mixin";
import { OutboxMixin, type OutboxMethods, outboxMigrations } from "../../mixins/outbox.mixin";

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
];

type Operation = "authorize" | "capture" | "void" | "refund";
type Svc = Service & DbMethods & OutboxMethods & IdempotencyMethods & { provider: PaymentProvider; [k: string]: any };

const money = { type: "object", strict: true, props: { amount: ORDER_AMOUNT_RULE, currency: { type: "equal", value: "USD" } } };
const orderId = "string|min:1|max:36";
const key = "string|min:1|max:255";

function publicPayment(p: any) {
	return { id: p.id, orderId: p.order_id, status: p.status as PaymentStatus, amount: { amount: p.amount, currency: p.currency }, captured: p.captured, refunded: p.refunded, brand: p.brand ?? null, createdAt: new Date(p.created_at).toISOString() };
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
				Operation: s.define(
					"PaymentOperation",
					{ idempotency_key: { type: DataTypes.STRING(255), primaryKey: true }, operation: DataTypes.STRING(16), payment_id: DataTypes.STRING(36), result: DataTypes.JSON, error: DataTypes.JSON, created_at: DataTypes.DATE(3) },
					{ tableName: "payment_operations", timestamps: false },
				),
			}),
		}),
		IdempotencyMixin,
		OutboxMixin,
		AccessMixin,
	],

	settings: { slowTokenMs: 2000 },

	actions: {
		authorize: {
			params: { orderId, amount: money, paymentToken: "string|min:1|max:100", idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; amount: Money; paymentToken: string; idempotencyKey: string }>) {
				const { amount, paymentToken, idempotencyKey } = ctx.params;
				return this.operate("authorize", idempotencyKey, ctx.params, async () => {
					const now = new Date();
					const row: any = { id: randomUUID(), order_id: ctx.params.orderId, amount: amount.amount, currency: amount.currency, captured: 0, refunded: 0, brand: brandOf(paymentToken), created_at: now, updated_at: now };
					let reference: string;
					try {
						({ reference } = await this.provider.authorize(paymentToken, amount));
					} catch (err) {
						// An unknown token (422) writes nothing; a decline is kept as a FAILED payment.
						if (!(err instanceof PaymentDeclinedError)) throw err;
						recordPaymentDecline(String(err.type));
						Object.assign(row, { status: "FAILED", failure: err.type });
						await this.transaction(async (t: Transaction) => {
							await this.models.Payment.create(row, { transaction: t });
							await this.recordOperation(t, idempotencyKey, "authorize", row.id, null, err);
							await this.recordEvent(t, "payments.payment.failed", this.eventData(row));
						});
						throw err;
					}
					Object.assign(row, { status: "AUTHORIZED", provider_ref: reference });
					const result = { paymentId: row.id, status: "AUTHORIZED" };
					try {
						await this.transaction(async (t: Transaction) => {
							await this.models.Payment.create(row, { transaction: t });
							await this.recordOperation(t, idempotencyKey, "authorize", row.id, result);
							await this.recordEvent(t, "payments.payment.authorized", this.eventData(row));
						});
					} catch (err) {
						// No hold may stay open at the provider for a payment we did not record.
						await this.provider.void(reference).catch((e: Error) => this.logger.error("Could not void an unrecorded authorisation", { orderId: row.order_id, reference, error: e.message }));
						throw err;
					}
					return result;
				});
			},
		},

		capture: {
			params: { orderId, idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string }>) {
				const { idempotencyKey } = ctx.params;
				return this.operate("capture", idempotencyKey, ctx.params, async () => {
					const p: any = await this.models.Payment.findOne({ where: { order_id: ctx.params.orderId, status: { [Op.ne]: "FAILED" } }, order: [["created_at", "DESC"]], raw: true });
					if (!p) throw new ConflictError("The order has no authorised payment", "NO_OPEN_PAYMENT");
					const result = { paymentId: p.id, status: "CAPTURED" };
					if (p.status !== "CAPTURED") {
						assertMove("capture", p.status);
						// A refused capture leaves the authorisation open, for the saga to void.
						await this.provider.capture(p.provider_ref, { amount: p.amount, currency: p.currency });
					}
					await this.transaction(async (t: Transaction) => {
						const [n] = await this.models.Payment.update({ status: "CAPTURED", captured: p.amount, updated_at: new Date() }, { where: { id: p.id, status: "AUTHORIZED" }, transaction: t });
						if (n) await this.recordEvent(t, "payments.payment.captured", this.eventData({ ...p, status: "CAPTURED" }));
						else {
							// Captured meanwhile (another key) is the same outcome; anything else is an illegal move.
							const now: any = await this.models.Payment.findByPk(p.id, { transaction: t, raw: true });
							if (now.status !== "CAPTURED") assertMove("capture", now.status);
						}
						await this.recordOperation(t, idempotencyKey, "capture", p.id, result);
					});
					return result;
				});
			},
		},

		/** Voids the order's open authorisations; nothing to void is not an error (compensation). */
		void: {
			params: { orderId, idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string }>) {
				return this.operate("void", ctx.params.idempotencyKey, ctx.params, async () => {
					const open: any[] = await this.models.Payment.findAll({ where: { order_id: ctx.params.orderId, status: "AUTHORIZED" }, order: [["created_at", "ASC"]], raw: true });
					for (const p of open) await this.provider.void(p.provider_ref);
					return this.transaction(async (t: Transaction) => {
						let voided = 0;
						for (const p of open) {
							const [n] = await this.models.Payment.update({ status: "VOIDED", updated_at: new Date() }, { where: { id: p.id, status: "AUTHORIZED" }, transaction: t });
							if (!n) continue;
							voided++;
							await this.recordEvent(t, "payments.payment.voided", this.eventData({ ...p, status: "VOIDED" }));
						}
						await this.recordOperation(t, ctx.params.idempotencyKey, "void", open[0]?.id ?? null, { voided });
						return { voided };
					});
				});
			},
		},

		/** Refunds captured money of the order (all of it unless `amount`); never more than captured. */
		refund: {
			params: { orderId, amount: `${ORDER_AMOUNT_RULE}|optional`, idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; amount?: number; idempotencyKey: string }>) {
				const { amount, idempotencyKey } = ctx.params;
				return this.operate("refund", idempotencyKey, ctx.params, async () => {
					const done: { p: any; amount: number }[] = [];
					const result = await this.transaction(async (t: Transaction) => {
						const paid: any[] = await this.models.Payment.findAll({ where: { order_id: ctx.params.orderId, status: { [Op.in]: movableFrom("refund") } }, order: [["created_at", "ASC"]], transaction: t, lock: t.LOCK.UPDATE, raw: true });
						const left = paid.reduce((n, p) => n + p.captured - p.refunded, 0);
						if (amount !== undefined && amount > left) throw new ConflictError(`Refund of ${amount} exceeds the ${left} left to refund`, "REFUND_EXCEEDS_CAPTURE", { left });
						let wanted = amount ?? left;
						for (const p of paid) {
							const a = Math.min(wanted, p.captured - p.refunded);
							if (a <= 0) continue;
							await this.applyRefund(t, p, a);
							done.push({ p, amount: a });
							wanted -= a;
						}
						const refunded = done.reduce((n, d) => n + d.amount, 0);
						await this.recordOperation(t, idempotencyKey, "refund", done[0]?.p.id ?? null, { refunded });
						return { refunded };
					});
					for (const d of done) await this.providerRefund(d.p, d.amount);
					return result;
				});
			},
		},

		byOrder: {
			params: { orderId },
			async handler(this: Svc, ctx: Context<{ orderId: string }>) {
				const rows: any[] = await this.models.Payment.findAll({ where: { order_id: ctx.params.orderId }, order: [["created_at", "ASC"], ["id", "ASC"]], raw: true });
				return rows.map(p => ({ id: p.id, status: p.status, amount: p.amount, captured: p.captured, refunded: p.refunded }));
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

		adminRefund: {
			auth: "admin",
			roles: ["support"],
			params: { id: "string|min:1|max:36", amount: `${ORDER_AMOUNT_RULE}|optional` },
			async handler(this: Svc, ctx: Context<{ id: string; amount?: number }>) {
				const { p, amount } = await this.transaction(async (t: Transaction) => {
					const row: any = await this.models.Payment.findByPk(ctx.params.id, { transaction: t, lock: t.LOCK.UPDATE, raw: true });
					if (!row) throw new NotFoundError("Payment", "PAYMENT_NOT_FOUND");
					assertMove("refund", row.status);
					const a = refundAmount(row.captured, row.refunded, ctx.params.amount);
					await this.applyRefund(t, row, a);
					return { p: row, amount: a };
				});
				await this.providerRefund(p, amount);
				return publicPayment(await this.models.Payment.findByPk(p.id, { raw: true }));
			},
		},
	},

	methods: {
		/** Runs `fn` once per key: a repeat gets the first answer (or error), whether it is still running or long done. */
		operate<T>(this: Svc, operation: Operation, idempotencyKey: string, params: unknown, fn: () => Promise<T>): Promise<T> {
			return this.once(operation, idempotencyKey, params, async () => {
				const earlier = await this.storedOperation(idempotencyKey, operation);
				if (earlier) return earlier.result as T;
				try {
					return await fn();
				} catch (err) {
					// A rerun of the same key recorded its effect first: this one rolled back; answer with that one.
					const raced = this.isUniqueViolation(err) ? await this.storedOperation(idempotencyKey, operation) : undefined;
					if (raced) return raced.result as T;
					throw err;
				}
			}, { waitMs: 5000 });
		},

		async storedOperation(this: Svc, idempotencyKey: string, operation: Operation): Promise<{ result: unknown } | undefined> {
			const row: any = await this.models.Operation.findByPk(idempotencyKey, { raw: true });
			if (!row) return undefined;
			if (row.operation !== operation) throw new UnprocessableError(`This idempotency key was used for ${row.operation}`, "IDEMPOTENCY_KEY_REUSED", [{ field: "idempotencyKey", message: "already used" }]);
			const error = jsonColumn<any>(row.error, null);
			if (error) throw error.code === 402 ? new PaymentDeclinedError(error.type, error.message) : new Errors.MoleculerClientError(error.message, error.code, error.type, error.data);
			return { result: jsonColumn(row.result, null) };
		},

		recordOperation(this: Svc, t: Transaction, idempotencyKey: string, operation: Operation, paymentId: string | null, result: unknown, error?: Errors.MoleculerError) {
			const stored = error ? { message: error.message, code: error.code, type: error.type, data: error.data ?? null } : null;
			return this.models.Operation.create({ idempotency_key: idempotencyKey, operation, payment_id: paymentId, result, error: stored, created_at: new Date() }, { transaction: t });
		},

		eventData(row: any): PaymentEventData {
			return { paymentId: row.id, orderId: row.order_id, amount: { amount: row.amount, currency: row.currency }, status: row.status };
		},

		/** Adds `amount` to the refunded sum; the database refuses a refund beyond the capture, whatever runs concurrently. */
		async applyRefund(this: Svc, t: Transaction, p: any, amount: number) {
			const a = Math.trunc(amount);
			const [n] = await this.models.Payment.update(
				{
					refunded: this.sequelize.literal(`refunded + ${a}`),
					status: this.sequelize.literal(`CASE WHEN refunded + ${a} >= captured THEN 'REFUNDED' ELSE 'PARTIALLY_REFUNDED' END`),
					updated_at: new Date(),
				},
				{ where: { id: p.id, status: { [Op.in]: movableFrom("refund") }, [Op.and]: this.sequelize.literal(`captured - refunded >= ${a}`) }, transaction: t },
			);
			if (!n) throw new ConflictError(`Refund of ${a} exceeds what is left to refund`, "REFUND_EXCEEDS_CAPTURE");
			const after: any = await this.models.Payment.findByPk(p.id, { transaction: t, raw: true });
			await this.recordEvent(t, "payments.payment.refunded", { ...this.eventData(after), amount: { amount: a, currency: after.currency } });
		},

		/** The refund is recorded first (so no concurrent one can overshoot), then sent; a provider failure is loud. */
		async providerRefund(this: Svc, p: any, amount: number) {
			try {
				await this.provider.refund(p.provider_ref, { amount, currency: p.currency });
				recordRefund(amount, p.currency);
			} catch (err) {
				this.logger.error("Provider refused a recorded refund; needs an operator", { paymentId: p.id, orderId: p.order_id, amount, error: (err as Error).message });
				throw err;
			}
		},
	},

	created(this: Svc) {
		this.provider = new SimulatedProvider(this.settings.slowTokenMs);
	},
};

export default PaymentsService;
