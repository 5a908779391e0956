/**
 * Idempotency: `this.once(scope, key, params, fn)` runs `fn` at most once per (scope, key) and
 * answers every repetition with the first outcome. A unique key in the database decides between
 * concurrent callers, never a check-then-insert.
 *
 * - same key, same params → the stored answer (or the stored client error), nothing done again
 * - same key, other params → 422 IDEMPOTENCY_KEY_REUSED
 * - same key while the first call runs → 409 IDEMPOTENCY_KEY_IN_FLIGHT, or (waitMs) wait for it
 * - a server-side failure forgets the key, so a retry may run again
 * Records are kept `retentionHours` (≥ 24 h) and then swept.
 */
import { createHash } from "node:crypto";
import type { Service, ServiceSchema } from "moleculer";
import { DataTypes, Op } from "sequelize";
import { ConflictError, UnprocessableError } from "../lib/errors";
import type { DbMethods, Migration } from "./db.mixin";
import { jsonColumn } from "./db.mixin";

export const idempotencyMigrations: Migration[] = [
	{
		name: "idempotency-001",
		async up(qi, T) {
			await qi.createTable("idempotency_records", {
				scope: { type: T.STRING(100), primaryKey: true },
				key: { type: T.STRING(255), primaryKey: true },
				request_hash: { type: T.STRING(64), allowNull: false },
				state: { type: T.STRING(16), allowNull: false },
				response: { type: T.JSON, allowNull: true },
				error: { type: T.JSON, allowNull: true },
				created_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("idempotency_records", ["created_at"]);
		},
	},
];

export interface OnceOptions {
	/** How long a repetition waits for an in-flight first call before 409 (0: answer 409 at once). */
	waitMs?: number;
	/** An IN_FLIGHT record older than this belongs to a process that died: the key may run again. */
	staleAfterMs?: number;
}

export interface IdempotencyMethods {
	once<T>(scope: string, key: string, params: unknown, fn: () => Promise<T>, opts?: OnceOptions): Promise<T>;
}

/** A canonical hash of the request: key order does not matter. */
export function requestHash(params: unknown): string {
	const canonical = (v: unknown): unknown =>
		Array.isArray(v) ? v.map(canonical) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map(k => [k, canonical((v as any)[k])])) : v;
	return createHash("sha256").update(JSON.stringify(canonical(params) ?? null)).digest("hex");
}

function storedError(e: { message: string; code: number; type: string; data?: unknown; name?: string }) {
	const err = new ConflictError(e.message, e.type, e.data);
	Object.assign(err, { code: e.code, name: e.name ?? "ClientError" });
	return err;
}

type Svc = Service & DbMethods & { [k: string]: any };

export const IdempotencyMixin = {
	settings: { idempotencyRetentionHours: 48 },

	methods: {
		async once<T>(this: Svc, scope: string, key: string, params: unknown, fn: () => Promise<T>, opts: OnceOptions = {}): Promise<T> {
			const Model = this.idempotencyModel();
			const hash = requestHash(params);
			try {
				await Model.create({ scope, key, request_hash: hash, state: "IN_FLIGHT", created_at: new Date() });
			} catch (err) {
				if (!this.isUniqueViolation(err)) throw err;
				return this.repeatOf(scope, key, hash, opts.waitMs ?? 0, opts.staleAfterMs ?? 60_000, () => this.once(scope, key, params, fn, opts));
			}
			try {
				const result = await fn();
				await Model.update({ state: "DONE", response: result === undefined ? null : result }, { where: { scope, key } });
				return result;
			} catch (err: any) {
				if (err?.code >= 400 && err?.code < 500) {
					// A client error is the answer: the same request keeps getting it.
					await Model.update({ state: "FAILED", error: { message: err.message, code: err.code, type: err.type, data: err.data, name: err.name } }, { where: { scope, key } });
				} else {
					await Model.destroy({ where: { scope, key, state: "IN_FLIGHT" } });
				}
				throw err;
			}
		},

		async repeatOf(this: Svc, scope: string, key: string, hash: string, waitMs: number, staleAfterMs: number, again: () => Promise<unknown>) {
			const deadline = Date.now() + waitMs;
			for (;;) {
				const rec: any = await this.idempotencyModel().findOne({ where: { scope, key }, raw: true });
				if (!rec) throw new ConflictError("The first request with this key failed; retry", "IDEMPOTENCY_KEY_IN_FLIGHT");
				if (rec.request_hash !== hash) throw new UnprocessableError("This Idempotency-Key was used with a different request", "IDEMPOTENCY_KEY_REUSED");
				if (rec.state === "DONE") return jsonColumn(rec.response, null);
				if (rec.state === "FAILED") throw storedError(jsonColumn(rec.error, { message: "failed", code: 409, type: "FAILED" }));
				if (Date.now() - new Date(rec.created_at).getTime() > staleAfterMs) {
					// Its owner died mid-call; the operation itself must tolerate running again (it is idempotent).
					await this.idempotencyModel().destroy({ where: { scope, key, state: "IN_FLIGHT", created_at: rec.created_at } });
					return again();
				}
				if (Date.now() >= deadline) throw new ConflictError("A request with this key is still being processed", "IDEMPOTENCY_KEY_IN_FLIGHT");
				await new Promise(r => setTimeout(r, 50));
			}
		},

		idempotencyModel(this: Svc) {
			this._idempotencyModel ??= this.sequelize.define(
				"IdempotencyRecord",
				{
					scope: { type: DataTypes.STRING(100), primaryKey: true },
					key: { type: DataTypes.STRING(255), primaryKey: true },
					request_hash: DataTypes.STRING(64),
					state: DataTypes.STRING(16),
					response: DataTypes.JSON,
					error: DataTypes.JSON,
					created_at: DataTypes.DATE(3),
				},
				{ tableName: "idempotency_records", timestamps: false },
			);
			return this._idempotencyModel;
		},

		async sweepIdempotency(this: Svc) {
			const cutoff = new Date(Date.now() - this.settings.idempotencyRetentionHours * 3_600_000);
			return this.idempotencyModel().destroy({ where: { created_at: { [Op.lt]: cutoff }, state: { [Op.ne]: "IN_FLIGHT" } } });
		},
	},

	started(this: Svc) {
		this._idempotencySweep = setInterval(() => {
			this.sweepIdempotency().catch((err: Error) => this.logger.warn("Idempotency sweep failed; will retry", err.message));
		}, 3_600_000);
		this._idempotencySweep.unref();
	},

	stopped(this: Svc) {
		clearInterval(this._idempotencySweep);
	},
} as unknown as Partial<ServiceSchema>;
