/**
 * Payments: authorize, capture, void and refund through a PaymentProvider (the simulated one by
 * default), each idempotent on the caller's key, with a state machine that refuses illegal moves
 * and refunds beyond the capture — also under concurrent refunds (conditional update).
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, Op, type Transaction } from "sequelize";
import { clampPaging } from "../../lib/catalog/query";
import { ConflictError, NotFoundError } from "../../lib/errors";
import type { PaymentEventData } from "../../lib/events";
import { PaymentDeclinedError, type PaymentProvider, SimulatedProvider } from "../../lib/payments/provider";
import { type PaymentStatus, assertMove, refundAmount, statusAfterRefund } from "../../lib/payments/state";
import { AccessMixin } from "../../mixins/access.mixin";
import { DbMixin, type DbMethods, type Migration } from "../../mixins/db.mixin";
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
];

type Svc = Service & DbMethods & OutboxMethods & IdempotencyMethods & { provider: PaymentProvider; [k: string]: any };

const money = { type: "object", strict: true, props: { amount: "number|integer|min:1|max:1000000000", currency: { type: "equal", value: "USD" } } };
const key = "string|min:1|max:255";

function publicPayment(p: any) {
	return { id: p.id, orderId: p.order_id, status: p.status as PaymentStatus, amount: { amount: p.amount, currency: p.currency }, captured: p.captured, refunded: p.refunded, createdAt: new Date(p.created_at).toISOString() };
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
	],

	settings: { slowTokenMs: 2000 },

	actions: {
		authorize: {
			params: { orderId: "string|max:36", amount: money, paymentToken: "string|min:1|max:100", idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; amount: { amount: number; currency: string }; paymentToken: string; idempotencyKey: string }>) {
				const { orderId, amount, paymentToken, idempotencyKey } = ctx.params;
				return this.once("authorize", idempotencyKey, ctx.params, async () => {
					const now = new Date();
					const row: any = { id: randomUUID(), order_id: orderId, amount: amount.amount, currency: amount.currency, captured: 0, refunded: 0, created_at: now, updated_at: now };
					try {
						const { reference } = await this.provider.authorize(paymentToken, amount);
						Object.assign(row, { status: "AUTHORIZED", provider_ref: reference });
					} catch (err) {
						if (!(err instanceof PaymentDeclinedError)) throw err;
						Object.assign(row, { status: "FAILED", failure: err.type });
						await this.save(row, "payments.payment.failed");
						throw err;
					}
					await this.save(row, "payments.payment.authorized");
					return { paymentId: row.id, status: row.status };
				}, { waitMs: 5000 });
			},
		},

		capture: {
			params: { orderId: "string|max:36", idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string }>) {
				return this.once("capture", ctx.params.idempotencyKey, ctx.params, async () => {
					const p = await this.openPayment(ctx.params.orderId, ["AUTHORIZED", "CAPTURED"]);
					if (p.status === "CAPTURED") return { paymentId: p.id, status: p.status };
					await this.provider.capture(p.provider_ref, { amount: p.amount, currency: p.currency });
					await this.move(p, "capture", { status: "CAPTURED", captured: p.amount }, "payments.payment.captured");
					return { paymentId: p.id, status: "CAPTURED" };
				}, { waitMs: 5000 });
			},
		},

		/** Voids the order's open authorisation; nothing to void is not an error (compensation). */
		void: {
			params: { orderId: "string|max:36", idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; idempotencyKey: string }>) {
				return this.once("void", ctx.params.idempotencyKey, ctx.params, async () => {
					const open: any[] = await this.models.Payment.findAll({ where: { order_id: ctx.params.orderId, status: "AUTHORIZED" }, raw: true });
					for (const p of open) {
						await this.provider.void(p.provider_ref);
						await this.move(p, "void", { status: "VOIDED" }, "payments.payment.voided");
					}
					return { voided: open.length };
				}, { waitMs: 5000 });
			},
		},

		/** Refunds captured money of the order (all of it unless `amount`); never more than captured. */
		refund: {
			params: { orderId: "string|max:36", amount: "number|integer|min:1|optional", idempotencyKey: key },
			handler(this: Svc, ctx: Context<{ orderId: string; amount?: number; idempotencyKey: string }>) {
				return this.once("refund", ctx.params.idempotencyKey, ctx.params, async () => {
					const paid: any[] = await this.models.Payment.findAll({ where: { order_id: ctx.params.orderId, status: { [Op.in]: ["CAPTURED", "PARTIALLY_REFUNDED"] } }, raw: true });
					let refunded = 0;
					for (const p of paid) refunded += await this.refundPayment(p, ctx.params.amount);
					return { refunded };
				}, { waitMs: 5000 });
			},
		},

		byOrder: {
			params: { orderId: "string|max:36" },
			async handler(this: Svc, ctx: Context<{ orderId: string }>) {
				const rows: any[] = await this.models.Payment.findAll({ where: { order_id: ctx.params.orderId }, order: [["created_at", "ASC"]], raw: true });
				return rows.map(p => ({ id: p.id, status: p.status, amount: p.amount, captured: p.captured, refunded: p.refunded }));
			},
		},

		list: {
			auth: "admin",
			params: { orderId: "string|max:36|optional", page: "number|integer|convert|optional", pageSize: "number|integer|convert|optional" },
			async handler(this: Svc, ctx: Context<{ orderId?: string; page?: number; pageSize?: number }>) {
				const { page, pageSize, offset } = clampPaging(ctx.params.page, ctx.params.pageSize);
				const where = ctx.params.orderId ? { order_id: ctx.params.orderId } : {};
				const { rows, count } = await this.models.Payment.findAndCountAll({ where, order: [["created_at", "DESC"], ["id", "ASC"]], limit: pageSize, offset, raw: true });
				return { items: rows.map(publicPayment), total: count, page, pageSize };
			},
		},

		adminRefund: {
			auth: "admin",
			roles: ["support"],
			params: { id: "string|max:36", amount: "number|integer|min:1|max:1000000000|optional" },
			async handler(this: Svc, ctx: Context<{ id: string; amount?: number }>) {
				const p: any = await this.models.Payment.findByPk(ctx.params.id, { raw: true });
				if (!p) throw new NotFoundError("Payment", "PAYMENT_NOT_FOUND");
				await this.refundPayment(p, ctx.params.amount);
				return publicPayment(await this.models.Payment.findByPk(p.id, { raw: true }));
			},
		},
	},

	methods: {
		async save(this: Svc, row: any, event: "payments.payment.authorized" | "payments.payment.failed") {
			await this.transaction(async (t: Transaction) => {
				await this.models.Payment.create(row, { transaction: t });
				await this.recordEvent(t, event, this.eventData(row));
			});
		},

		eventData(row: any): PaymentEventData {
			return { paymentId: row.id, orderId: row.order_id, amount: { amount: row.amount, currency: row.currency }, status: row.status };
		},

		async openPayment(this: Svc, orderId: string, statuses: PaymentStatus[]) {
			const p: any = await this.models.Payment.findOne({ where: { order_id: orderId, status: { [Op.in]: statuses } }, order: [["created_at", "DESC"]], raw: true });
			if (!p) throw new ConflictError("The order has no authorised payment", "NO_OPEN_PAYMENT");
			return p;
		},

		/** Moves a payment from its current status with a conditional update, recording the event. */
		async move(this: Svc, p: any, op: "capture" | "void", changes: Record<string, unknown>, event: "payments.payment.captured" | "payments.payment.voided") {
			assertMove(op, p.status);
			await this.transaction(async (t: Transaction) => {
				const [n] = await this.models.Payment.update({ ...changes, updated_at: new Date() }, { where: { id: p.id, status: p.status }, transaction: t });
				if (!n) throw new ConflictError("The payment changed meanwhile", "PAYMENT_CONCURRENT_CHANGE");
				await this.recordEvent(t, event, this.eventData({ ...p, ...changes }));
			});
		},

		async refundPayment(this: Svc, p: any, requested?: number): Promise<number> {
			assertMove("refund", p.status);
			const amount = refundAmount(p.captured, p.refunded, requested);
			await this.transaction(async (t: Transaction) => {
				// The database decides: a concurrent refund that would overshoot updates nothing.
				const [n] = await this.models.Payment.update(
					{ refunded: this.sequelize.literal(`refunded + ${amount}`), status: statusAfterRefund(p.captured, p.refunded + amount), updated_at: new Date() },
					{ where: { id: p.id, refunded: p.refunded, captured: { [Op.gte]: p.refunded + amount } }, transaction: t },
				);
				if (!n) throw new ConflictError("The payment was refunded meanwhile; try again", "REFUND_CONCURRENT_CHANGE");
				await this.recordEvent(t, "payments.payment.refunded", this.eventData({ ...p, status: statusAfterRefund(p.captured, p.refunded + amount), amount, refunded: p.refunded + amount }));
			});
			await this.provider.refund(p.provider_ref, { amount, currency: p.currency });
			return amount;
		},
	},

	created(this: Svc) {
		this.provider = new SimulatedProvider(this.settings.slowTokenMs);
	},
};

export default PaymentsService;
