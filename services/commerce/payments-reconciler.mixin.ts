/**
 * Payment reconciliation (issue 8; the seed's payment service "handles payment processing and
 * reconciliation"): every PAYMENTS_RECONCILE_MS, payments changed recently and untouched for a
 * grace period are compared with their orders' outcomes (orders.statuses) and what a crash or an
 * operator left wrong is repaired (rules: lib/payments/reconcile.ts) — an authorisation open on a
 * REJECTED/CANCELLED order voided, captured money on such an order refunded, a CONFIRMED order whose
 * payment was refunded in full cancelled. Each repair goes through the idempotent payments command
 * (`void`, `refund`) under a key derived from the payment, is recorded once in `payment_repairs`,
 * logged with the ids and counted in `payment_reconciler_repairs_total`. `npm run repl` lists them
 * (`reconciliations`) and runs a pass (`reconcile`).
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import { Op } from "sequelize";
import { config } from "../../config";
import { SYSTEM_USER } from "../../lib/access";
import { reconcilerMetrics } from "../../lib/metrics";
import { type PaymentView, type Repair, decideRepair, repairKey } from "../../lib/payments/reconcile";
import type { DbMethods, Migration } from "../../mixins/db.mixin";

export const reconcilerMigrations: Migration[] = [
	{
		name: "i8-001-payment-repairs",
		async up(qi, T) {
			await qi.createTable("payment_repairs", {
				payment_id: { type: T.STRING(36), primaryKey: true },
				action: { type: T.STRING(16), primaryKey: true },
				order_id: { type: T.STRING(36), allowNull: false },
				reason: { type: T.STRING(200), allowNull: false },
				amount: { type: T.BIGINT, allowNull: true },
				at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("payment_repairs", ["at"], { name: "payment_repairs_at" });
		},
	},
];

/** One batch of a pass: payments compared per call to orders. */
const BATCH = 500;

type Svc = Service &
	DbMethods & {
		reconcileTimer?: NodeJS.Timeout;
		reconcileRunning?: Promise<Repair[]>;
		reconcilePass(ctx?: Context): Promise<Repair[]>;
		applyRepair(ctx: Context | undefined, r: Repair): Promise<boolean>;
	};

const meta = { user: SYSTEM_USER };

export const PaymentsReconcilerMixin = {
	actions: {
		/** Runs a pass now (the REPL's `reconcile`): `{ repaired: [{ action, paymentId, orderId, reason, amount? }] }`. */
		reconcile: {
			params: { graceMs: "number|integer|min:0|optional" },
			async handler(this: Svc, ctx: Context<{ graceMs?: number }>) {
				return { repaired: await this.reconcilePass(ctx.params.graceMs === undefined ? undefined : ctx) };
			},
		},

		/** Repairs made so far, newest first (the REPL's `reconciliations`). */
		reconciliations: {
			params: { limit: "number|integer|min:1|max:1000|convert|optional" },
			async handler(this: Svc, ctx: Context<{ limit?: number }>) {
				const rows: any[] = await this.sql.select<any>(`SELECT payment_id, order_id, action, reason, amount, at FROM payment_repairs ORDER BY at DESC LIMIT ${ctx.params.limit ?? 100}`, []);
				return rows.map(r => ({ paymentId: r.payment_id, orderId: r.order_id, action: r.action, reason: r.reason, amount: r.amount === null ? null : Number(r.amount), at: new Date(r.at).toISOString() }));
			},
		},
	},

	methods: {
		/** One pass (never two at once on a node); returns the repairs it made. `ctx.params.graceMs` overrides the grace period. */
		reconcilePass(this: Svc, ctx?: Context<{ graceMs?: number }>): Promise<Repair[]> {
			if (this.reconcileRunning) return this.reconcileRunning;
			const run = async () => {
				const c = config();
				const graceMs = ctx?.params.graceMs ?? c.PAYMENTS_RECONCILE_GRACE_MS;
				const now = Date.now();
				const rows: any[] = await this.models.Payment.findAll({
					where: {
						status: ["AUTHORIZED", "CAPTURED", "PARTIALLY_REFUNDED", "REFUNDED"],
						updated_at: { [Op.lte]: new Date(now - graceMs), [Op.gte]: new Date(now - c.PAYMENTS_RECONCILE_WINDOW_HOURS * 3_600_000) },
					},
					attributes: ["id", "order_id", "status", "captured", "refunded"],
					order: [["updated_at", "ASC"]],
					raw: true,
				});
				const repaired: Repair[] = [];
				for (let i = 0; i < rows.length; i += BATCH) {
					const batch: PaymentView[] = rows.slice(i, i + BATCH).map(r => ({ id: r.id, orderId: r.order_id, status: r.status, captured: Number(r.captured), refunded: Number(r.refunded) }));
					const statuses: Record<string, string> = await this.broker.call("orders.statuses", { ids: [...new Set(batch.map(b => b.orderId))] }, { meta, timeout: 10_000 });
					for (const p of batch) {
						const repair = decideRepair(p, statuses[p.orderId] ?? null);
						if (repair && (await this.applyRepair(ctx, repair))) repaired.push(repair);
					}
				}
				return repaired;
			};
			this.reconcileRunning = run().finally(() => {
				this.reconcileRunning = undefined;
			});
			return this.reconcileRunning;
		},

		/** Applies one repair through the idempotent command under its key; true when it changed something. */
		async applyRepair(this: Svc, ctx: Context | undefined, r: Repair): Promise<boolean> {
			const call = (action: string, params: Record<string, unknown>) => (ctx ? ctx.call(action, params, { meta }) : this.broker.call(action, params, { meta }));
			try {
				if (r.action === "void") {
					const { voided } = (await call("payments.void", { orderId: r.orderId, idempotencyKey: repairKey(r) })) as { voided: number };
					if (!voided) return false;
				} else if (r.action === "refund") {
					const { refunded } = (await call("payments.refund", { orderId: r.orderId, idempotencyKey: repairKey(r) })) as { refunded: number };
					if (!refunded) return false;
				} else {
					const o = (await call("orders.refundApplied", { orderId: r.orderId, refundId: repairKey(r), refundAmount: 1, fullyRefunded: true, occurredAt: new Date().toISOString() })) as { outcome: string };
					if (o.outcome !== "cancel") return false;
				}
			} catch (err) {
				reconcilerMetrics.failures.inc({ action: r.action });
				this.logger.error("Payment repair failed; the next pass tries again", { action: r.action, paymentId: r.paymentId, orderId: r.orderId, error: (err as Error).message });
				return false;
			}
			const now = new Date();
			await this.models.Payment.sequelize!.query(
				this.sql.dialect === "postgres"
					? "INSERT INTO payment_repairs (payment_id, action, order_id, reason, amount, at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
					: "INSERT OR IGNORE INTO payment_repairs (payment_id, action, order_id, reason, amount, at) VALUES ($1, $2, $3, $4, $5, $6)",
				{ bind: [r.paymentId, r.action, r.orderId, r.reason, r.amount ?? null, now.toISOString()] },
			);
			reconcilerMetrics.repairs.inc({ action: r.action });
			this.logger.warn("Payment repaired by the reconciler", { action: r.action, paymentId: r.paymentId, orderId: r.orderId, reason: r.reason, amount: r.amount });
			return true;
		},
	},

	started(this: Svc) {
		const every = config().PAYMENTS_RECONCILE_MS;
		if (!every) return;
		this.reconcileTimer = setInterval(() => {
			this.reconcilePass().catch(err => this.logger.warn(`Payment reconciliation pass failed: ${(err as Error).message}`));
		}, every);
		this.reconcileTimer.unref();
	},

	stopped(this: Svc) {
		if (this.reconcileTimer) clearInterval(this.reconcileTimer);
	},
} as unknown as Partial<ServiceSchema>;
