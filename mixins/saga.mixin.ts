/**
 * Sagas declared as data. The log lives in the owning service's database and each step is
 * written STARTED before it is called, so after any crash the log says what may have taken
 * effect. Steps and compensations carry idempotency keys derived from the saga id and the step.
 * A node drives a saga under a lease; sagas whose driver died are picked up by another node (or
 * the same one after restart). Compensations run in reverse, retried with backoff; past a limit
 * the saga is parked as STUCK for an operator — counted, logged, never dropped.
 */
import { hostname } from "node:os";
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, Op, type Transaction } from "sequelize";
import { Counter } from "prom-client";
import { config } from "../config";
import { SYSTEM_USER } from "../lib/access";
import { ConflictError, NotFoundError } from "../lib/errors";
import { faultPoint } from "../lib/faults";
import { promRegistry } from "../lib/metrics";
import type { DbMethods, Migration } from "./db.mixin";
import { jsonColumn } from "./db.mixin";

export interface SagaStep<D> {
	name: string;
	/** An action call, or `local` work of the owning service. */
	action?: string;
	params?: (data: D) => Record<string, unknown>;
	local?: (svc: any, data: D, sagaId: string) => Promise<unknown>;
	timeout: number;
	/** How often a retryable failure (timeout, no node) is tried again before giving up. */
	retries: number;
	/** Merges the step's result into the saga data. */
	onResult?: (data: D, result: any) => D;
	compensate?: { action: string; params: (data: D) => Record<string, unknown>; timeout: number };
}

export interface SagaDefinition<D> {
	name: string;
	steps: SagaStep<D>[];
	/** After the last step. */
	completed?: (svc: any, data: D, sagaId: string) => Promise<void>;
	/** After every compensation ran; `failure` is what stopped the saga. */
	compensated?: (svc: any, data: D, sagaId: string, failure: { step: string; error: any }) => Promise<void>;
}

export const sagaMigrations: Migration[] = [
	{
		name: "saga-001",
		async up(qi, T) {
			await qi.createTable("saga_instances", {
				id: { type: T.STRING(36), primaryKey: true },
				name: { type: T.STRING(40), allowNull: false },
				status: { type: T.STRING(16), allowNull: false },
				data: { type: T.JSON, allowNull: false },
				step: { type: T.INTEGER, allowNull: false },
				failure: { type: T.JSON, allowNull: true },
				lease_owner: { type: T.STRING(120), allowNull: true },
				lease_until: { type: T.DATE(3), allowNull: false },
				created_at: { type: T.DATE(3), allowNull: false },
				updated_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("saga_instances", ["status", "lease_until"]);
			await qi.createTable("saga_log", {
				id: { type: T.STRING(36), primaryKey: true },
				saga_id: { type: T.STRING(36), allowNull: false },
				step: { type: T.STRING(40), allowNull: false },
				phase: { type: T.STRING(12), allowNull: false },
				status: { type: T.STRING(12), allowNull: false },
				detail: { type: T.JSON, allowNull: true },
				at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("saga_log", ["saga_id", "at"]);
		},
	},
];

const stuckTotal = new Counter({ name: "saga_stuck_total", help: "Sagas parked as STUCK after compensations kept failing", labelNames: ["saga"], registers: [promRegistry] });
const finishedTotal = new Counter({ name: "saga_finished_total", help: "Sagas that reached a terminal state", labelNames: ["saga", "status"], registers: [promRegistry] });

const ACTIVE = ["RUNNING", "COMPENSATING"];
const TERMINAL = ["COMPLETED", "COMPENSATED"];

type Svc = Service & DbMethods & { [k: string]: any };

/** Failures worth another try of the same (idempotent) call: nothing said no, the call just did not get through. */
export function isRetryable(err: any): boolean {
	return Boolean(err?.retryable) || ["REQUEST_TIMEOUT", "SERVICE_NOT_FOUND", "SERVICE_NOT_AVAILABLE", "QUEUE_FULL"].includes(err?.type);
}

/** Failures that prove the request never reached a handler: no node had the action, or its breaker was open. */
const NEVER_SENT = new Set(["SERVICE_NOT_FOUND", "SERVICE_NOT_AVAILABLE"]);

const errorInfo = (err: any) => ({ message: String(err?.message ?? err), code: err?.code ?? null, type: err?.type ?? null });

export function SagaMixin(definitions: SagaDefinition<any>[], opts: { leaseMs?: number; recoverEveryMs?: number; compensationAttempts?: number } = {}): Partial<ServiceSchema> {
	const byName = new Map(definitions.map(d => [d.name, d]));
	const leaseMs = opts.leaseMs ?? config().SAGA_LEASE_MS;
	const compensationAttempts = opts.compensationAttempts ?? config().SAGA_COMPENSATION_ATTEMPTS;

	const schema = {
		methods: {
			sagaModels(this: Svc) {
				this._sagaModels ??= {
					Instance: this.sequelize.define(
						"SagaInstance",
						{ id: { type: DataTypes.STRING(36), primaryKey: true }, name: DataTypes.STRING(40), status: DataTypes.STRING(16), data: DataTypes.JSON, step: DataTypes.INTEGER, failure: DataTypes.JSON, lease_owner: DataTypes.STRING(120), lease_until: DataTypes.DATE(3), created_at: DataTypes.DATE(3), updated_at: DataTypes.DATE(3) },
						{ tableName: "saga_instances", timestamps: false },
					),
					Log: this.sequelize.define(
						"SagaLog",
						{ id: { type: DataTypes.STRING(36), primaryKey: true }, saga_id: DataTypes.STRING(36), step: DataTypes.STRING(40), phase: DataTypes.STRING(12), status: DataTypes.STRING(12), detail: DataTypes.JSON, at: DataTypes.DATE(3) },
						{ tableName: "saga_log", timestamps: false },
					),
				};
				return this._sagaModels;
			},

			/** Records a new saga inside the caller's transaction (so it exists iff the caller's change does). */
			async createSaga(this: Svc, t: Transaction, name: string, id: string, data: unknown) {
				if (!byName.has(name)) throw new Error(`Unknown saga ${name}`);
				const now = new Date();
				await this.sagaModels().Instance.create({ id, name, status: "RUNNING", data, step: 0, failure: null, lease_owner: this.sagaOwner, lease_until: new Date(now.getTime() + leaseMs), created_at: now, updated_at: now }, { transaction: t });
			},

			/** Drives a saga this node holds the lease of, to the end or until the node dies. */
			async driveSaga(this: Svc, id: string): Promise<string> {
				const { Instance } = this.sagaModels();
				let inst: any = await Instance.findByPk(id, { raw: true });
				const def = byName.get(inst.name)!;
				let data = jsonColumn<any>(inst.data, {});
				const ctx = this.broker.ContextFactory.create(this.broker, null as any, {}, { meta: { user: SYSTEM_USER }, requestID: `saga-${id}` } as any);

				if (inst.status === "RUNNING") {
					for (let i = inst.step; i < def.steps.length; i++) {
						const step = def.steps[i];
						await this.sagaLog(id, step.name, "forward", "STARTED");
						faultPoint(`saga.${def.name}.before:${step.name}`);
						try {
							const result = await this.runStep(ctx, id, def, step, data);
							if (step.onResult) data = step.onResult(data, result);
						} catch (error) {
							// A step that never reached its service took no effect: nothing of it to compensate.
							await this.sagaLog(id, step.name, "forward", (error as any)?.sagaNeverSent ? "NOT_SENT" : "FAILED", errorInfo(error));
							this.logger.warn(`Saga ${def.name} step ${step.name} failed; compensating`, { sagaId: id, err: (error as Error).message });
							await this.renew(id, { status: "COMPENSATING", data, failure: { step: step.name, error: errorInfo(error) } });
							inst = await Instance.findByPk(id, { raw: true });
							return this.compensateSaga(ctx, inst, def);
						}
						await this.sagaLog(id, step.name, "forward", "DONE");
						await this.renew(id, { step: i + 1, data });
						faultPoint(`saga.${def.name}.after:${step.name}`);
					}
					if (def.completed) await def.completed(this, data, id);
					await this.renew(id, { status: "COMPLETED", lease_owner: null });
					finishedTotal.inc({ saga: def.name, status: "COMPLETED" });
					this.sagaSettled(id, "COMPLETED");
					return "COMPLETED";
				}
				if (inst.status === "COMPENSATING") return this.compensateSaga(ctx, inst, def);
				return inst.status;
			},

			async runStep(this: Svc, ctx: Context, id: string, def: SagaDefinition<any>, step: SagaStep<any>, data: any) {
				let everSent = false;
				for (let attempt = 0; ; attempt++) {
					try {
						if (step.local) return await step.local(this, data, id);
						return await ctx.call(step.action!, { ...step.params!(data), idempotencyKey: `${id}:${step.name}` }, { timeout: step.timeout, retries: 0 });
					} catch (err: any) {
						everSent ||= !NEVER_SENT.has(err?.type);
						if (!isRetryable(err) || attempt >= step.retries) {
							if (!everSent && err && typeof err === "object") err.sagaNeverSent = true;
							throw err;
						}
						await new Promise(r => setTimeout(r, 100 * 2 ** attempt));
					}
				}
			},

			/** Every step begun, from the last to the first: its compensation, retried with backoff. */
			async compensateSaga(this: Svc, ctx: Context, inst: any, def: SagaDefinition<any>): Promise<string> {
				const data = jsonColumn<any>(inst.data, {});
				const failure = jsonColumn<any>(inst.failure, null);
				const done = new Set(((await this.sagaModels().Log.findAll({ where: { saga_id: inst.id, phase: "compensate", status: "DONE" }, raw: true })) as any[]).map(r => r.step));
				const forward: any[] = await this.sagaModels().Log.findAll({ where: { saga_id: inst.id, phase: "forward" }, raw: true });
				const notSent = new Set(forward.filter(r => r.status === "NOT_SENT").map(r => r.step));
				const begun = new Set(forward.filter(r => r.status === "STARTED" && !notSent.has(r.step)).map(r => r.step));
				for (let i = def.steps.length - 1; i >= 0; i--) {
					const step = def.steps[i];
					if (!step.compensate || !begun.has(step.name) || done.has(step.name)) continue;
					faultPoint(`saga.${def.name}.compensate.before:${step.name}`);
					let lastError: unknown;
					for (let attempt = 0; attempt < compensationAttempts; attempt++) {
						try {
							await ctx.call(step.compensate.action, { ...step.compensate.params(data), idempotencyKey: `${inst.id}:${step.name}:compensate` }, { timeout: step.compensate.timeout, retries: 0 });
							lastError = undefined;
							break;
						} catch (err) {
							lastError = err;
							await this.sagaLog(inst.id, step.name, "compensate", "FAILED", errorInfo(err));
							await this.renew(inst.id, {});
							await new Promise(r => setTimeout(r, Math.min(5000, 200 * 2 ** attempt)));
						}
					}
					if (lastError) {
						// Never dropped: parked for an operator, visible and retryable from the REPL.
						await this.renew(inst.id, { status: "STUCK", lease_owner: null });
						stuckTotal.inc({ saga: def.name });
						this.sagaSettled(inst.id, "STUCK");
						this.logger.error(`Saga ${def.name} STUCK: compensation ${step.name} keeps failing`, { sagaId: inst.id, err: (lastError as Error).message });
						return "STUCK";
					}
					await this.sagaLog(inst.id, step.name, "compensate", "DONE");
					faultPoint(`saga.${def.name}.compensate.after:${step.name}`);
				}
				if (def.compensated) await def.compensated(this, data, inst.id, failure ?? { step: "unknown", error: {} });
				await this.renew(inst.id, { status: "COMPENSATED", lease_owner: null });
				finishedTotal.inc({ saga: def.name, status: "COMPENSATED" });
				this.sagaSettled(inst.id, "COMPENSATED");
				return "COMPENSATED";
			},

			async sagaLog(this: Svc, sagaId: string, step: string, phase: string, status: string, detail: unknown = null) {
				await this.sagaModels().Log.create({ id: randomUUID(), saga_id: sagaId, step, phase, status, detail, at: new Date() });
			},

			/** Updates the saga and extends this node's lease on it. */
			async renew(this: Svc, id: string, changes: Record<string, unknown>) {
				const now = new Date();
				await this.sagaModels().Instance.update({ ...changes, updated_at: now, lease_until: new Date(now.getTime() + leaseMs) }, { where: { id } });
			},

			/** Takes over active sagas whose lease ran out; a conditional update makes one node the winner. */
			async recoverSagas(this: Svc): Promise<number> {
				// The database may not be open yet on the very first pass.
				if (!this.sequelize) return 0;
				const { Instance } = this.sagaModels();
				const now = new Date();
				const orphans: any[] = await Instance.findAll({ where: { status: { [Op.in]: ACTIVE }, lease_until: { [Op.lt]: now } }, attributes: ["id", "lease_until"], limit: 50, raw: true });
				let taken = 0;
				for (const o of orphans) {
					const [won] = await Instance.update({ lease_owner: this.sagaOwner, lease_until: new Date(Date.now() + leaseMs) }, { where: { id: o.id, lease_until: o.lease_until } });
					if (!won) continue;
					taken++;
					this.logger.info("Resuming a saga whose driver stopped", { sagaId: o.id });
					this.driveSaga(o.id).catch((err: Error) => this.logger.error("Resumed saga failed; it will be picked up again", { sagaId: o.id, err: err.message }));
				}
				return taken;
			},

			/** Resolves when this node finishes driving the saga, or after `ms` with its current status. */
			async waitForSaga(this: Svc, id: string, ms: number): Promise<string> {
				const finished = new Promise<string>(resolve => {
					const waiters = this._sagaWaiters.get(id) ?? [];
					waiters.push(resolve);
					this._sagaWaiters.set(id, waiters);
				});
				let timer: NodeJS.Timeout | undefined;
				const timeout = new Promise<undefined>(resolve => (timer = setTimeout(() => resolve(undefined), ms)));
				const status = await Promise.race([finished, timeout]);
				clearTimeout(timer);
				this._sagaWaiters.delete(id);
				if (status) return status;
				const inst: any = await this.sagaModels().Instance.findByPk(id, { attributes: ["status"], raw: true });
				return inst?.status;
			},

			/** Wakes whoever waits for this saga on this node (no polling of the database). */
			sagaSettled(this: Svc, id: string, status: string) {
				for (const resolve of this._sagaWaiters.get(id) ?? []) resolve(status);
				this._sagaWaiters.delete(id);
			},
		},

		actions: {
			sagas: {
				auth: "admin",
				params: { status: { type: "enum", values: ["RUNNING", "COMPENSATING", "STUCK", "COMPLETED", "COMPENSATED"], optional: true } },
				async handler(this: Svc, ctx: Context<{ status?: string }>) {
					const where = ctx.params.status ? { status: ctx.params.status } : { status: { [Op.notIn]: TERMINAL } };
					const rows: any[] = await this.sagaModels().Instance.findAll({ where, order: [["created_at", "DESC"]], limit: 200, raw: true });
					return rows.map(r => ({ id: r.id, name: r.name, status: r.status, step: r.step, failure: jsonColumn(r.failure, null), leaseOwner: r.lease_owner, updatedAt: new Date(r.updated_at).toISOString() }));
				},
			},
			sagaLog: {
				auth: "admin",
				params: { id: "string|max:36" },
				async handler(this: Svc, ctx: Context<{ id: string }>) {
					const inst: any = await this.sagaModels().Instance.findByPk(ctx.params.id, { raw: true });
					if (!inst) throw new NotFoundError("Saga", "SAGA_NOT_FOUND");
					const log: any[] = await this.sagaModels().Log.findAll({ where: { saga_id: inst.id }, order: [["at", "ASC"]], raw: true });
					return { id: inst.id, name: inst.name, status: inst.status, step: inst.step, failure: jsonColumn(inst.failure, null), log: log.map(l => ({ step: l.step, phase: l.phase, status: l.status, detail: jsonColumn(l.detail, null), at: new Date(l.at).toISOString() })) };
				},
			},
			/** Operator: run a STUCK saga's remaining compensations again. */
			sagaRetry: {
				auth: "admin",
				roles: ["ops"],
				params: { id: "string|max:36" },
				async handler(this: Svc, ctx: Context<{ id: string }>) {
					return this.operatorTakeover(ctx.params.id, ["STUCK"], "COMPENSATING");
				},
			},
			/** Operator: abandon a saga that cannot go forward and compensate what it did. */
			sagaCompensate: {
				auth: "admin",
				roles: ["ops"],
				params: { id: "string|max:36" },
				async handler(this: Svc, ctx: Context<{ id: string }>) {
					return this.operatorTakeover(ctx.params.id, ["STUCK", "RUNNING"], "COMPENSATING");
				},
			},
		},

		created(this: Svc) {
			this.sagaOwner = `${this.broker.nodeID}:${hostname()}:${process.pid}`;
			this._sagaWaiters = new Map<string, ((status: string) => void)[]>();
		},

		started(this: Svc) {
			// After the database is open (moleculer-db connects in its own started handler).
			setImmediate(() => this.recoverSagas().catch((err: Error) => this.logger.warn("Saga recovery pass failed", err.message)));
			this._sagaTimer = setInterval(() => {
				this.recoverSagas().catch((err: Error) => this.logger.warn("Saga recovery pass failed; will retry", err.message));
			}, opts.recoverEveryMs ?? config().SAGA_RECOVER_MS);
			this._sagaTimer.unref();
		},

		stopped(this: Svc) {
			clearInterval(this._sagaTimer);
		},
	};

	(schema.methods as any).operatorTakeover = async function (this: Svc, id: string, from: string[], to: string) {
		const { Instance } = this.sagaModels();
		const [n] = await Instance.update({ status: to, lease_owner: this.sagaOwner, lease_until: new Date(Date.now() + leaseMs), updated_at: new Date() }, { where: { id, status: { [Op.in]: from } } });
		if (!n) throw new ConflictError(`Saga is not ${from.join(" or ")}`, "SAGA_NOT_IN_STATE");
		const status = await this.driveSaga(id);
		return { id, status };
	};

	return schema as unknown as Partial<ServiceSchema>;
}
