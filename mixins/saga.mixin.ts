/**
 * Sagas declared as data, driven under a fenced lease (docs/CONVENTIONS.md, "Sagas").
 *
 * - A saga is written once when it starts (its instance, with its input, in the same write as the
 *   change that starts it), and then only at transitions that decide something: compensating
 *   (with what failed and what may have taken effect), each compensation's outcome, parked
 *   (STUCK), and the end (with the owner's final change: an order confirmed, rejected, cancelled).
 *   Each transition is ONE write — the instance's change and its log rows together, one statement
 *   on PostgreSQL.
 * - Every step and compensation is called with an idempotency key derived from the saga id and the
 *   step (mixins/idempotency.mixin.ts), so a saga resumed after a crash calls its steps again from
 *   the first: those that took effect answer from their records, the rest run.
 * - What runs next is decided from the log by lib/saga/decide.ts (pure): a refusal (4xx) took no
 *   effect and needs no compensation; an unknown outcome is retried, then compensated.
 * - A node drives a saga while it holds its lease. Every write of a driver is conditional on the
 *   lease's epoch; taking a saga over increments it. Before each call a driver checks its lease
 *   and renews it (a fenced write) when it runs low, so a driver that was paused past its lease
 *   stops before its next call, and any write it still attempts changes nothing.
 * - A compensation is retried with backoff; past `compensationAttempts` in one drive the saga is
 *   parked STUCK and taken over again automatically, with growing backoff (and by an operator
 *   from the REPL). Each retry is logged with the saga and order ids and counted.
 */
import { hostname } from "node:os";
import { randomUUID } from "node:crypto";
import type { CallingOptions, Context, Service, ServiceBroker, ServiceSchema } from "moleculer";
import { Counter } from "prom-client";
import { config } from "../config";
import { SYSTEM_USER } from "../lib/access";
import type { Params, Part } from "../lib/db/sql";
import { ConflictError, NotFoundError } from "../lib/errors";
import { faultPoint } from "../lib/faults";
import { promRegistry } from "../lib/metrics";
import { type Decision, type LogEntry, type Outcome, type SagaSpec, decide, outcomeOf } from "../lib/saga/decide";
import type { DbMethods, Migration } from "./db.mixin";
import { jsonColumn } from "./db.mixin";

export interface SagaStep<D> {
	name: string;
	action: string;
	params: (data: D) => Record<string, unknown>;
	/** Call timeout (ms): above the longest the callee itself may take (its provider, its locks). */
	timeout: number;
	/** Further calls, within one drive, after an outcome that may be retried (a timeout, no node). */
	retries: number;
	/** Merges the step's answer into the saga's data (a resumed saga gets it again from the replayed step). */
	onResult?: (data: D, result: any) => D;
	/**
	 * Undoes the step. It is called with its own idempotency key and `stepKey`, the key the step
	 * was called with, which the callee fences so that the step, arriving late, takes no effect.
	 */
	compensate?: { action: string; params: (data: D) => Record<string, unknown>; timeout: number };
}

/** What the owner writes with a saga's last transition (guarded: applied only if the driver still holds the lease). */
export interface Settlement {
	p: Params;
	sagaId: string;
	/** Parts of the final write must require this one (the fenced saga update). */
	requires: string[];
	now: Date;
	/** Set when the step that failed is known (a compensated saga). */
	failure?: { step: string; error: ErrorInfo };
}

export interface SagaDefinition<D> {
	name: string;
	steps: SagaStep<D>[];
	/** No compensations: a failing step parks the saga and its next drive tries again (cancelling an order). */
	forwardOnly?: boolean;
	/** The owner's parts of the final write once every step is done. */
	completed?: (svc: any, data: D, s: Settlement) => Part[];
	/** The owner's parts of the final write once every compensation ran. */
	compensated?: (svc: any, data: D, s: Settlement) => Part[];
}

export interface ErrorInfo {
	message: string;
	code: number | null;
	type: string | null;
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
	{
		name: "i7-002-saga-fencing",
		async up(qi, T) {
			// The lease's fencing epoch, and the automatic retries of parked sagas.
			await qi.addColumn("saga_instances", "epoch", { type: T.INTEGER, allowNull: false, defaultValue: 1 });
			await qi.addColumn("saga_instances", "attempts", { type: T.INTEGER, allowNull: false, defaultValue: 0 });
			await qi.addColumn("saga_instances", "next_retry_at", { type: T.DATE(3), allowNull: true });
			await qi.addIndex("saga_instances", ["status", "next_retry_at"], { name: "saga_instances_retry" });
			await qi.addColumn("saga_log", "epoch", { type: T.INTEGER, allowNull: false, defaultValue: 1 });
			// The old log said STARTED before every call; what the new engine reads are outcomes only.
			await qi.sequelize.query("DELETE FROM saga_log WHERE status = 'STARTED'");
		},
	},
];

const stuckTotal = new Counter({ name: "saga_stuck_total", help: "Sagas parked as STUCK after a step or compensation kept failing", labelNames: ["saga"], registers: [promRegistry] });
const stuckRetries = new Counter({ name: "saga_stuck_retries_total", help: "Automatic retries of STUCK sagas", labelNames: ["saga"], registers: [promRegistry] });
const finishedTotal = new Counter({ name: "saga_finished_total", help: "Sagas that reached a terminal state", labelNames: ["saga", "status"], registers: [promRegistry] });
const takeovers = new Counter({ name: "saga_takeovers_total", help: "Sagas resumed by a node after their driver's lease ran out", labelNames: ["saga"], registers: [promRegistry] });

const ACTIVE = ["RUNNING", "COMPENSATING"];
const LOG_STATUS: Record<Outcome, string> = { done: "DONE", refused: "REFUSED", "not-sent": "NOT_SENT", unavailable: "UNAVAILABLE", unknown: "UNKNOWN", failed: "FAILED" };
const OUTCOME: Record<string, Outcome> = Object.fromEntries(Object.entries(LOG_STATUS).map(([k, v]) => [v, k as Outcome]));

type Svc = Service & DbMethods & { [k: string]: any };

/** This node no longer holds the saga's lease: another node took it over. */
export class LeaseLost extends Error {
	constructor(readonly sagaId: string) {
		super(`Saga ${sagaId}: the lease was taken over`);
		this.name = "LeaseLost";
	}
}

/** How long (ms) a node whose saga call timed out is avoided for that action by this node's sagas: the breaker's half-open time. */
const SUSPECT_MS = 10_000;

/**
 * A node whose saga call of an action timed out: this node's sagas avoid it for that action until
 * `until` (epoch ms); then one call, the probe, goes to it while the others still avoid it. The
 * probe's answer (anything but a timeout) clears that node's suspicion, its timeout renews it.
 * Without the probe, every saga in flight went back to a still-hung node the moment the suspicion
 * ran out. Kept per action and node: a second node timing out does not end the first one's
 * suspicion, nor does one node's probe clear another's (adversary).
 */
export interface Suspect {
	until: number;
	probing: boolean;
}

/** By action, the suspected nodes (nodeID → Suspect). */
export type Suspects = Map<string, Map<string, Suspect>>;

/** Where a saga call goes: to `nodeID` when set (avoiding the suspects, or probing one), else where the strategy picks. */
interface Route {
	nodeID?: string;
	/** This call probes the suspect `nodeID`. */
	probe: boolean;
}

/** Where this node's next saga call of `action` goes, given what timed out before (see Suspect). */
export function routeFor(broker: ServiceBroker, suspects: Suspects, action: string): Route {
	const nodes = suspects.get(action);
	if (!nodes?.size) return { probe: false };
	const now = Date.now();
	for (const [nodeID, s] of nodes) {
		if (s.until <= now && !s.probing) {
			s.probing = true;
			return { nodeID, probe: true };
		}
	}
	return { nodeID: otherReplica(broker, action, new Set(nodes.keys())), probe: false };
}

/** What a saga call's outcome says: a timeout (re)suspects the node it went to; the probe's other outcomes clear the probed node. */
export function learn(suspects: Suspects, action: string, route: Route, err: unknown): void {
	const e = err as { type?: string; data?: { nodeID?: string } } | undefined;
	if (e?.type === "REQUEST_TIMEOUT" && e.data?.nodeID) {
		let nodes = suspects.get(action);
		if (!nodes) suspects.set(action, (nodes = new Map()));
		nodes.set(e.data.nodeID, { until: Date.now() + SUSPECT_MS, probing: false });
	} else if (route.probe && route.nodeID) suspects.get(action)?.delete(route.nodeID);
}

/**
 * A node not in `avoid` with `action` available (its breaker not open), chosen at random, or
 * undefined when there is none or nothing to avoid (then the broker's strategy picks). Saga calls
 * of an action that just timed out on a node go there: with two replicas and one hung, the round
 * robin sent about every other retry back to the hung one, and a step that timed out three times
 * was compensated — checkouts REJECTED while a healthy replica stood by, until the hung one's
 * breaker opened (test/e2e/adversary/inventory-hung-replica.spec.ts).
 */
export function otherReplica(broker: ServiceBroker, action: string, avoid: ReadonlySet<string> | string | undefined): string | undefined {
	if (!avoid) return undefined;
	const avoided = typeof avoid === "string" ? new Set([avoid]) : avoid;
	if (!avoided.size) return undefined;
	const list = broker.registry.getActionEndpoints(action) as unknown as { endpoints: { id: string; isAvailable: boolean }[] } | undefined;
	const others = list?.endpoints.filter(ep => !avoided.has(ep.id) && ep.isAvailable) ?? [];
	return others.length ? others[Math.floor(Math.random() * others.length)].id : undefined;
}

const errorInfo = (err: any): ErrorInfo => ({ message: String(err?.message ?? err).slice(0, 500), code: typeof err?.code === "number" ? err.code : null, type: err?.type ?? null });

interface Entry extends LogEntry {
	detail: unknown;
	at: Date;
	/** Written to saga_log already. */
	stored: boolean;
}

/** One drive of one saga by this node. */
interface Drive {
	id: string;
	def: SagaDefinition<any>;
	epoch: number;
	leaseUntil: number;
	status: string;
	data: any;
	log: Entry[];
	failure: Failure | null;
	attempts: number;
	ctx: Context;
}

/** What stopped the saga, and the compensations it then planned (step names, last first). */
interface Failure {
	step: string;
	error: ErrorInfo;
	plan?: string[];
}

/** What a local waiter (the request that started the saga) asks of its final write. */
export interface Waiter {
	resolve: (status: string) => void;
	/** Parts the final write adds for the waiter (the idempotent answer of the request); `data`: the saga's data as its steps' `onResult` left it. */
	settleParts?: (s: Settlement, status: "COMPLETED" | "COMPENSATED", data: any) => Part[];
}

export interface SagaOptions {
	leaseMs?: number;
	recoverEveryMs?: number;
	compensationAttempts?: number;
	/** First wait before a STUCK saga is retried; doubles each time, up to `stuckRetryMaxMs`. */
	stuckRetryBaseMs?: number;
	stuckRetryMaxMs?: number;
	/** Calls of a step per drive that may reach no node before it fails (lib/saga/decide.ts); default UNREACHED_ATTEMPTS. */
	unreachedAttempts?: number;
}

/**
 * A step whose callee is known but unavailable (its node is restarting, or every breaker to it is
 * open: lib/saga/decide.ts `unavailable`) is called again up to this many times per drive, the waits between calls growing 100 ms,
 * 200 ms … up to 2 s (callStep): about 9 s in all, within the 10 s after which the broker gives up
 * on a silent node (heartbeatTimeout, moleculer.config.ts). A checkout placed while a node
 * restarts waits for it (the client gets 202 PENDING past CHECKOUT_WAIT_MS) instead of being
 * compensated and REJECTED; calls that reached a node still count against the step's retries. A callee whose nodes all left
 * looks the same (Moleculer keeps the action, with no endpoint): it costs those 9 s before the
 * step fails. An action no node ever announced still fails fast (docs/LIMITS.md).
 */
export const UNREACHED_ATTEMPTS = 9;

/** The pause before the n-th automatic retry of a parked saga (n from 1). */
export function stuckBackoff(n: number, baseMs: number, maxMs: number): number {
	return Math.min(maxMs, baseMs * 2 ** Math.max(0, n - 1));
}

export function SagaMixin(definitions: SagaDefinition<any>[], opts: SagaOptions = {}): Partial<ServiceSchema> {
	const byName = new Map(definitions.map(d => [d.name, d]));
	const c = config();
	const leaseMs = opts.leaseMs ?? c.SAGA_LEASE_MS;
	const compensationAttempts = opts.compensationAttempts ?? c.SAGA_COMPENSATION_ATTEMPTS;
	const stuckBaseMs = opts.stuckRetryBaseMs ?? c.SAGA_STUCK_RETRY_BASE_MS;
	const stuckMaxMs = opts.stuckRetryMaxMs ?? c.SAGA_STUCK_RETRY_MAX_MS;
	const specs = new Map<string, SagaSpec>(
		definitions.map(d => [d.name, { steps: d.steps.map(s => ({ name: s.name, compensable: Boolean(s.compensate), attempts: 1 + s.retries })), compensationAttempts, forwardOnly: d.forwardOnly, unreachedAttempts: opts.unreachedAttempts ?? UNREACHED_ATTEMPTS }]),
	);

	const schema = {
		methods: {
			/** A part creating a saga in the caller's write (so it exists iff the caller's change does); this node drives it (epoch 1). */
			sagaPart(this: Svc, p: Params, name: string, id: string, data: unknown, requires: string[] = []): Part {
				if (!byName.has(name)) throw new Error(`Unknown saga ${name}`);
				const now = new Date();
				return {
					name: "saga_new",
					sql: `INSERT INTO saga_instances (id, name, status, data, step, failure, lease_owner, lease_until, created_at, updated_at, epoch, attempts, next_retry_at)
					      SELECT ${p.text(id)}, ${p.text(name)}, 'RUNNING', ${p.json(data)}, 0, NULL, ${p.text(this.sagaOwner)}, ${p.ts(new Date(now.getTime() + leaseMs))}, ${p.ts(now)}, ${p.ts(now)}, 1, 0, NULL WHERE {guard} RETURNING id`,
					requires,
				};
			},

			/** Drives a saga this node has just created (it holds the lease at epoch 1). */
			startSaga(this: Svc, name: string, id: string, data: unknown): Promise<string> {
				const def = byName.get(name)!;
				return this.runDrive({ id, def, epoch: 1, leaseUntil: Date.now() + leaseMs, status: "RUNNING", data, log: [], failure: null, attempts: 0, ctx: this.sagaContext(id) });
			},

			sagaContext(this: Svc, id: string): Context {
				return this.broker.ContextFactory.create(this.broker, null as any, {}, { meta: { user: SYSTEM_USER }, requestID: `saga-${id}` } as any);
			},

			/** Drives a saga whose instance row this node just took over (after a takeover that returned it). */
			async resumeSaga(this: Svc, row: any): Promise<string> {
				const def = byName.get(row.name);
				if (!def) throw new Error(`Unknown saga ${row.name}`);
				const logRows = await this.sql.select<any>("SELECT step, phase, status, detail, at, epoch FROM saga_log WHERE saga_id = $1 ORDER BY at, id", [row.id]);
				const log: Entry[] = logRows
					.filter(l => l.phase === "forward" || l.phase === "compensate")
					.map(l => ({ step: l.step, phase: l.phase, outcome: OUTCOME[l.status] ?? "unknown", epoch: Number(l.epoch), detail: jsonColumn(l.detail, null), at: new Date(l.at), stored: true }));
				return this.runDrive({
					id: row.id,
					def,
					epoch: Number(row.epoch),
					leaseUntil: new Date(row.lease_until).getTime(),
					status: row.status,
					data: jsonColumn(row.data, {}),
					log,
					failure: jsonColumn(row.failure, null),
					attempts: Number(row.attempts ?? 0),
					ctx: this.sagaContext(row.id),
				});
			},

			/** The loop: ask the log what is next, do it, note the outcome. Returns the status it left the saga in. */
			async runDrive(this: Svc, d: Drive): Promise<string> {
				const spec = specs.get(d.def.name)!;
				const index = (name: string) => d.def.steps.findIndex(s => s.name === name);
				try {
					for (;;) {
						const plan = d.failure?.plan?.map(index).filter(i => i >= 0);
						// Only the first drive made every call itself; a drive that took over compensates everything (decide.ts).
						const next: Decision = decide(spec, d.log, d.epoch, { compensating: d.status === "COMPENSATING", plan, knowsAll: d.epoch === 1 });
						if (next.next === "step") await this.callStep(d, next.index);
						else if (next.next === "compensate") {
							if (d.status !== "COMPENSATING") await this.beginCompensating(d, next.plan);
							await this.callCompensation(d, next.index);
						} else if (next.next === "complete") return await this.settle(d, "COMPLETED");
						else if (next.next === "compensated") {
							d.failure ??= this.failureOf(d, next.failed);
							return await this.settle(d, "COMPENSATED");
						} else return await this.park(d, next.index, next.phase);
					}
				} catch (err) {
					if (err instanceof LeaseLost) {
						this.logger.warn("Saga taken over by another node; this driver stops", { sagaId: d.id, orderId: d.data?.orderId, epoch: d.epoch });
						return "TAKEN_OVER";
					}
					throw err;
				}
			},

			async callStep(this: Svc, d: Drive, index: number) {
				const step = d.def.steps[index];
				const before = d.log.filter(e => e.phase === "forward" && e.step === step.name && e.epoch === d.epoch).length;
				// Retries back off: 100 ms, 200 ms, 400 ms … (the callee answers a repeat from its record).
				if (before) await sleep(Math.min(2000, 100 * 2 ** (before - 1)));
				await this.ensureLease(d, step.timeout);
				faultPoint(`saga.${d.def.name}.before:${step.name}`);
				try {
					const result = await this.callCommand(d.ctx, step.action, { ...step.params(d.data), idempotencyKey: `${d.id}:${step.name}` }, step.timeout);
					if (step.onResult) d.data = step.onResult(d.data, result);
					this.note(d, step.name, "forward", "done", null);
				} catch (err) {
					if (err instanceof LeaseLost) throw err;
					const outcome = outcomeOf(err);
					this.note(d, step.name, "forward", outcome, errorInfo(err));
					this.logger.warn(`Saga ${d.def.name} step ${step.name}: ${outcome}`, { sagaId: d.id, orderId: d.data?.orderId, err: (err as Error)?.message });
					return;
				}
				faultPoint(`saga.${d.def.name}.after:${step.name}`);
			},

			async callCompensation(this: Svc, d: Drive, index: number) {
				const step = d.def.steps[index];
				const comp = step.compensate!;
				const before = d.log.filter(e => e.phase === "compensate" && e.step === step.name && e.epoch === d.epoch).length;
				if (before) await sleep(Math.min(5000, 200 * 2 ** (before - 1)));
				await this.ensureLease(d, comp.timeout);
				faultPoint(`saga.${d.def.name}.compensate.before:${step.name}`);
				try {
					await this.callCommand(d.ctx, comp.action, { ...comp.params(d.data), idempotencyKey: `${d.id}:${step.name}:compensate`, stepKey: `${d.id}:${step.name}` }, comp.timeout);
				} catch (err) {
					if (err instanceof LeaseLost) throw err;
					this.note(d, step.name, "compensate", outcomeOf(err), errorInfo(err));
					this.logger.warn(`Saga ${d.def.name} compensation of ${step.name} failed; will retry`, { sagaId: d.id, orderId: d.data?.orderId, err: (err as Error)?.message });
					// Each failed attempt is written (it renews the lease): operators see why a saga is slow.
					await this.transition(d, {});
					return;
				}
				this.note(d, step.name, "compensate", "done", null);
				await this.transition(d, {});
				faultPoint(`saga.${d.def.name}.compensate.after:${step.name}`);
			},

			/**
			 * Calls a step or compensation: with its timeout (ms), no broker retry (the saga retries
			 * with the same key), and routed around a node whose saga call of this action timed out
			 * in the last SUSPECT_MS, when another node has it available (routeFor, otherReplica).
			 * The strategy alone may pick the hung node again, and Moleculer prefers a node's own
			 * services: a commerce node whose own payments hung sent every saga's first call there,
			 * and its breaker needs 10 timeouts in 10 s, which a few clients waiting 5 s each never
			 * reach (adversary, test/e2e/adversary/commerce-hung-payments.spec.ts). Throws what the
			 * call throws.
			 */
			async callCommand(this: Svc, ctx: Context, action: string, params: Record<string, unknown>, timeout: number): Promise<unknown> {
				const route = routeFor(this.broker, this._sagaSuspects, action);
				const opts: CallingOptions = route.nodeID ? { timeout, retries: 0, nodeID: route.nodeID } : { timeout, retries: 0 };
				try {
					const result = await ctx.call(action, params, opts);
					learn(this._sagaSuspects, action, route, undefined);
					return result;
				} catch (err) {
					learn(this._sagaSuspects, action, route, err);
					throw err;
				}
			},

			note(this: Svc, d: Drive, step: string, phase: "forward" | "compensate", outcome: Outcome, detail: unknown) {
				d.log.push({ step, phase, outcome, epoch: d.epoch, detail, at: new Date(), stored: false });
			},

			failureOf(this: Svc, d: Drive, failed: number): Failure {
				const step = d.def.steps[failed]?.name ?? "unknown";
				const last = [...d.log].reverse().find(e => e.phase === "forward" && e.step === step && e.outcome !== "done");
				return { step, error: (last?.detail as ErrorInfo) ?? { message: "unknown", code: null, type: null } };
			},

			/** The first compensation is about to run: the saga says so, with what failed, its plan and everything it tried (one write). */
			async beginCompensating(this: Svc, d: Drive, plan: number[]) {
				const failed = d.def.steps.findIndex(s => !d.log.some(e => e.phase === "forward" && e.step === s.name && e.outcome === "done"));
				const failure = (d.failure ??= this.failureOf(d, failed < 0 ? d.def.steps.length - 1 : failed));
				failure.plan = plan.map(i => d.def.steps[i].name);
				await this.transition(d, { status: "COMPENSATING", step: Math.max(0, failed), failure });
				d.status = "COMPENSATING";
				this.logger.warn(`Saga ${d.def.name} compensating after ${failure.step} failed`, { sagaId: d.id, orderId: d.data?.orderId, error: failure.error });
			},

			/**
			 * One transition: the instance's change, the log entries not yet written and the owner's
			 * parts, in one write, conditional on this driver's epoch. Nothing applies when another
			 * node took the saga over (LeaseLost).
			 */
			async transition(this: Svc, d: Drive, changes: { status?: string; step?: number; failure?: unknown; leaseOwner?: null; nextRetryAt?: Date | null }, extra: (s: Settlement) => Part[] = () => []) {
				const p = this.sql.params();
				const now = new Date();
				const until = new Date(now.getTime() + leaseMs);
				const sets = [`lease_until = ${p.ts(until)}`, `updated_at = ${p.ts(now)}`];
				if (changes.status) sets.push(`status = ${p.text(changes.status)}`);
				if (changes.step !== undefined) sets.push(`step = ${p.int(changes.step)}`);
				if (changes.failure !== undefined) sets.push(`failure = ${p.json(changes.failure)}`);
				if (changes.leaseOwner === null) sets.push("lease_owner = NULL");
				if (changes.nextRetryAt !== undefined) sets.push(`next_retry_at = ${changes.nextRetryAt ? p.ts(changes.nextRetryAt) : "NULL"}`);
				const parts: Part[] = [{ name: "saga", sql: `UPDATE saga_instances SET ${sets.join(", ")} WHERE id = ${p.text(d.id)} AND epoch = ${p.int(d.epoch)} RETURNING id` }];
				const unstored = d.log.filter(e => !e.stored);
				if (unstored.length) {
					const rows = unstored.map(
						e => `SELECT ${p.text(randomUUID())} AS id, ${p.text(e.step)} AS step, ${p.text(e.phase)} AS phase, ${p.text(LOG_STATUS[e.outcome])} AS status, ${p.json(e.detail)} AS detail, ${p.ts(e.at)} AS at, ${p.int(e.epoch)} AS epoch`,
					);
					parts.push({ name: "saga_log", sql: `INSERT INTO saga_log (id, saga_id, step, phase, status, detail, at, epoch) SELECT l.id, ${p.text(d.id)}, l.step, l.phase, l.status, l.detail, l.at, l.epoch FROM (${rows.join(" UNION ALL ")}) l WHERE {guard} RETURNING id`, requires: ["saga"] });
				}
				parts.push(...extra({ p, sagaId: d.id, requires: ["saga"], now, failure: d.failure ?? undefined }));
				const out = await this.sql.write(parts, p);
				if (!out.saga.length) throw new LeaseLost(d.id);
				for (const e of unstored) e.stored = true;
				d.leaseUntil = until.getTime();
				this.outboxWritten?.(out);
			},

			/** Before a call of up to `callMs`: a lease that would not outlast it is renewed (fenced); a lease lost means stop here. */
			async ensureLease(this: Svc, d: Drive, callMs = 0) {
				// Enough lease for the call (within what a lease can cover at all), else renew now.
				const need = Math.min(Math.max(callMs, leaseMs / 3), (leaseMs * 2) / 3);
				if (Date.now() + need < d.leaseUntil) return;
				const until = new Date(Date.now() + leaseMs);
				const p = this.sql.params();
				const rows = await this.sql.execute(`UPDATE saga_instances SET lease_until = ${p.ts(until)} WHERE id = ${p.text(d.id)} AND epoch = ${p.int(d.epoch)} RETURNING id`, p.values);
				if (!rows.length) throw new LeaseLost(d.id);
				d.leaseUntil = until.getTime();
			},

			/** The last transition: the saga's end and the owner's final change together. */
			async settle(this: Svc, d: Drive, status: "COMPLETED" | "COMPENSATED"): Promise<string> {
				const waiter: Waiter | undefined = this._sagaWaiters.get(d.id);
				const own = status === "COMPLETED" ? d.def.completed : d.def.compensated;
				const failure = status === "COMPENSATED" ? { failure: d.failure } : {};
				await this.transition(d, { status, leaseOwner: null, nextRetryAt: null, ...failure }, (s: Settlement) => [...(own?.(this, d.data, s) ?? []), ...(waiter?.settleParts?.(s, status, d.data) ?? [])]);
				finishedTotal.inc({ saga: d.def.name, status });
				this.sagaSettled(d.id, status);
				return status;
			},

			/** Retries used up: parked for a later drive, with a growing pause; never dropped. */
			async park(this: Svc, d: Drive, index: number, phase: string): Promise<string> {
				const attempt = d.attempts + 1;
				const wait = stuckBackoff(attempt, stuckBaseMs, stuckMaxMs);
				await this.transition(d, { status: "STUCK", leaseOwner: null, nextRetryAt: new Date(Date.now() + wait) });
				stuckTotal.inc({ saga: d.def.name });
				this.sagaSettled(d.id, "STUCK");
				this.logger.error(`Saga ${d.def.name} STUCK: ${phase === "forward" ? "step" : "compensation"} ${d.def.steps[index].name} keeps failing; retried automatically in ${wait} ms`, { sagaId: d.id, orderId: d.data?.orderId });
				return "STUCK";
			},

			/**
			 * Takes over sagas whose driver's lease ran out, and parked ones whose pause is over:
			 * one statement claims them (incrementing their epoch fences out the old driver), then
			 * each is driven here.
			 */
			async recoverSagas(this: Svc): Promise<number> {
				// The database may not be open yet on the very first pass.
				if (!this.sql) return 0;
				const p = this.sql.params();
				const now = new Date();
				const due = await this.sql.select<{ id: string; epoch: number; status: string }>(
					`SELECT id, epoch, status FROM saga_instances WHERE (status IN ('RUNNING', 'COMPENSATING') AND lease_until < ${p.ts(now)}) OR (status = 'STUCK' AND next_retry_at <= ${p.ts(now)}) ORDER BY lease_until LIMIT 20`,
					p.values,
				);
				let taken = 0;
				for (const candidate of due) {
					const row = await this.claimSaga(candidate.id, Number(candidate.epoch));
					if (!row) continue;
					taken++;
					const orderId = jsonColumn<any>(row.data, {})?.orderId;
					if (candidate.status === "STUCK") {
						stuckRetries.inc({ saga: row.name });
						this.logger.warn(`Retrying a STUCK saga (attempt ${row.attempts})`, { sagaId: row.id, orderId, attempt: Number(row.attempts) });
					} else {
						takeovers.inc({ saga: row.name });
						this.logger.info("Resuming a saga whose driver stopped", { sagaId: row.id, orderId, epoch: Number(row.epoch) });
					}
					this.resumeSaga(row).catch((err: Error) => this.logger.error("Resumed saga failed; it will be picked up again", { sagaId: row.id, orderId, err: err.message }));
				}
				return taken;
			},

			/**
			 * Takes a saga over from the epoch it was seen in: the epoch goes up, so the previous
			 * driver's writes no longer apply; of two nodes claiming it, one wins. A parked saga
			 * resumes where it stopped (compensating if it was).
			 */
			async claimSaga(this: Svc, id: string, seenEpoch: number): Promise<any | undefined> {
				const p = this.sql.params();
				const now = new Date();
				const [row] = await this.sql.execute<any>(
					`UPDATE saga_instances SET epoch = epoch + 1, lease_owner = ${p.text(this.sagaOwner)}, lease_until = ${p.ts(new Date(now.getTime() + leaseMs))}, updated_at = ${p.ts(now)},
					   attempts = CASE WHEN status = 'STUCK' THEN attempts + 1 ELSE attempts END,
					   status = CASE WHEN status = 'STUCK' THEN (CASE WHEN failure IS NULL THEN 'RUNNING' ELSE 'COMPENSATING' END) ELSE status END
					 WHERE id = ${p.text(id)} AND epoch = ${p.int(seenEpoch)} AND status IN ('RUNNING', 'COMPENSATING', 'STUCK') RETURNING *`,
					p.values,
				);
				return row;
			},

			/**
			 * Takes one saga over now if its driver's lease ran out (or it is parked) and drives it
			 * here; false when it is terminal or a live driver holds it.
			 */
			async takeOverSaga(this: Svc, id: string): Promise<boolean> {
				const [seen] = await this.sql.select<any>("SELECT epoch, status, lease_until FROM saga_instances WHERE id = $1", [id]);
				if (!seen || !(seen.status === "STUCK" || (ACTIVE.includes(seen.status) && new Date(seen.lease_until).getTime() < Date.now()))) return false;
				const row = await this.claimSaga(id, Number(seen.epoch));
				if (!row) return false;
				takeovers.inc({ saga: String(row.name) });
				this.resumeSaga(row).catch((err: Error) => this.logger.error("Resumed saga failed; it will be picked up again", { sagaId: id, err: err.message }));
				return true;
			},

			/** The saga's status and lease as stored. */
			async sagaState(this: Svc, id: string): Promise<{ status: string; leaseLive: boolean; data: any } | undefined> {
				const [row] = await this.sql.select<any>("SELECT status, lease_until, data FROM saga_instances WHERE id = $1", [id]);
				if (!row) return undefined;
				return { status: row.status, leaseLive: new Date(row.lease_until).getTime() > Date.now(), data: jsonColumn(row.data, {}) };
			},

			/** Registers interest in a saga this node drives: resolves with its status when settled here, or after `ms` with undefined. */
			waitForSaga(this: Svc, id: string, ms: number, waiter: Partial<Waiter> = {}): Promise<string | undefined> {
				return new Promise(resolve => {
					const timer = setTimeout(() => {
						this._sagaWaiters.delete(id);
						resolve(undefined);
					}, ms);
					this._sagaWaiters.set(id, {
						...waiter,
						resolve: (status: string) => {
							clearTimeout(timer);
							resolve(status);
						},
					});
				});
			},

			/** Wakes whoever waits for this saga on this node (no polling of the database). */
			sagaSettled(this: Svc, id: string, status: string) {
				const w: Waiter | undefined = this._sagaWaiters.get(id);
				this._sagaWaiters.delete(id);
				w?.resolve(status);
			},

			async operatorTakeover(this: Svc, id: string, from: string[], to: string) {
				const p = this.sql.params();
				const now = new Date();
				const [row] = await this.sql.execute<any>(
					`UPDATE saga_instances SET status = ${p.text(to)}, epoch = epoch + 1, lease_owner = ${p.text(this.sagaOwner)}, lease_until = ${p.ts(new Date(now.getTime() + leaseMs))}, updated_at = ${p.ts(now)},
					   failure = CASE WHEN failure IS NULL THEN ${p.json({ step: "operator", error: { message: "compensated by an operator", code: null, type: "OPERATOR" } })} ELSE failure END
					 WHERE id = ${p.text(id)} AND status IN (${from.map(s => p.text(s)).join(", ")}) RETURNING *`,
					p.values,
				);
				if (!row) throw new ConflictError(`Saga is not ${from.join(" or ")}`, "SAGA_NOT_IN_STATE");
				this.logger.warn("Operator takes a saga over", { sagaId: id, orderId: jsonColumn<any>(row.data, {})?.orderId, to });
				const status = await this.resumeSaga(row);
				return { id, status };
			},
		},

		actions: {
			sagas: {
				auth: "admin",
				params: { status: { type: "enum", values: ["RUNNING", "COMPENSATING", "STUCK", "COMPLETED", "COMPENSATED"], optional: true } },
				async handler(this: Svc, ctx: Context<{ status?: string }>) {
					const where = ctx.params.status ? "status = $1" : "status IN ('RUNNING', 'COMPENSATING', 'STUCK')";
					const rows = await this.sql.select<any>(`SELECT * FROM saga_instances WHERE ${where} ORDER BY created_at DESC LIMIT 200`, ctx.params.status ? [ctx.params.status] : []);
					return rows.map(r => ({
						id: r.id,
						name: r.name,
						status: r.status,
						step: Number(r.step),
						failure: jsonColumn(r.failure, null),
						leaseOwner: r.lease_owner,
						epoch: Number(r.epoch),
						attempts: Number(r.attempts),
						nextRetryAt: r.next_retry_at ? new Date(r.next_retry_at).toISOString() : null,
						updatedAt: new Date(r.updated_at).toISOString(),
					}));
				},
			},
			sagaLog: {
				auth: "admin",
				params: { id: "string|max:36" },
				async handler(this: Svc, ctx: Context<{ id: string }>) {
					const [inst] = await this.sql.select<any>("SELECT * FROM saga_instances WHERE id = $1", [ctx.params.id]);
					if (!inst) throw new NotFoundError("Saga", "SAGA_NOT_FOUND");
					const log = await this.sql.select<any>("SELECT * FROM saga_log WHERE saga_id = $1 ORDER BY at, id", [inst.id]);
					return {
						id: inst.id,
						name: inst.name,
						status: inst.status,
						step: Number(inst.step),
						epoch: Number(inst.epoch),
						failure: jsonColumn(inst.failure, null),
						log: log.map(l => ({ step: l.step, phase: l.phase, status: l.status, epoch: Number(l.epoch), detail: jsonColumn(l.detail, null), at: new Date(l.at).toISOString() })),
					};
				},
			},
			/** Operator: run a STUCK saga again now (it would be retried automatically later). */
			sagaRetry: {
				auth: "admin",
				roles: ["ops"],
				params: { id: "string|max:36" },
				async handler(this: Svc, ctx: Context<{ id: string }>) {
					const [row] = await this.sql.select<any>("SELECT failure FROM saga_instances WHERE id = $1", [ctx.params.id]);
					return this.operatorTakeover(ctx.params.id, ["STUCK"], row && jsonColumn(row.failure, null) === null ? "RUNNING" : "COMPENSATING");
				},
			},
			/** Operator: abandon a saga that cannot go forward and compensate what it may have done. */
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
			this._sagaWaiters = new Map<string, Waiter>();
			this._sagaSuspects = new Map() as Suspects;
			// lib/metrics.ts fills the saga_instances gauge from the saga tables of such services when scraped.
			this.$ownsSagas = true;
		},

		started(this: Svc) {
			// After the database is open (moleculer-db connects in its own started handler).
			setImmediate(() => this.recoverSagas().catch((err: Error) => this.logger.warn("Saga recovery pass failed", err.message)));
			this._sagaTimer = setInterval(() => {
				this.recoverSagas().catch((err: Error) => this.logger.warn("Saga recovery pass failed; will retry", err.message));
			}, opts.recoverEveryMs ?? c.SAGA_RECOVER_MS);
			this._sagaTimer.unref();
		},

		stopped(this: Svc) {
			clearInterval(this._sagaTimer);
		},
	};

	return schema as unknown as Partial<ServiceSchema>;
}

function sleep(ms: number): Promise<void> {
	return new Promise(r => setTimeout(r, ms));
}
