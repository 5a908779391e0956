/**
 * What a saga does next, decided from its log alone (no I/O, no clock): the engine
 * (mixins/saga.mixin.ts) appends one entry per call it made and asks again.
 *
 * Rules (shared/DOMAIN.md, "The checkout saga"):
 * - Steps run in order; a step that answered `done` is not called again.
 * - A call whose outcome is unknown (timeout, a server error) or that never reached a node is
 *   retried, up to the step's attempts within one drive (an epoch), because every call carries
 *   the same idempotency key and so takes effect at most once. With `unreachedAttempts` set, calls
 *   that found the callee `unavailable` (known, but restarting or behind an open breaker) count
 *   apart, against that budget: such a call says nothing about the step. A call that found no
 *   node at all for the action (`not-sent`) still counts against the attempts: fail fast.
 * - A refusal (a 4xx) is final: the callee took no effect, so that step needs no compensation —
 *   unless an earlier attempt of it ended unknown, which may have taken effect after all.
 * - Once a step has failed, every step that may have taken effect (`done`, or any `unknown`
 *   attempt) is compensated, last first, each compensation retried until it succeeds; when the
 *   attempts of one drive are used up the saga parks (STUCK) until its next drive.
 * - Only the first drive knows every call the saga made (a drive writes nothing between steps).
 *   A drive that took the saga over knows only what it replayed, so when it has to compensate it
 *   compensates every step: compensations are idempotent, undo nothing that did not happen, and
 *   fence the steps they undo. The plan is written when compensation begins and kept by later drives.
 * - A forward-only saga (no compensations: the cancellation of an order) parks instead of giving
 *   up, and its next drive retries the step.
 */
import { Errors } from "moleculer";

/**
 * `done`: it answered. `refused`: a client error, no effect. `not-sent`: no handler ran (no node
 * has the action, or the callee's queue was full). `unavailable`: no handler ran, and the callee
 * is known but cannot be reached now (every endpoint down or behind an open breaker, or its node
 * is still starting its services): it may be back in seconds.
 * `unknown`: it may have taken effect and another call may help (a timeout, a retryable error).
 * `failed`: it may have taken effect and another call will not help (a non-retryable server error).
 */
export type Outcome = "done" | "refused" | "not-sent" | "unavailable" | "unknown" | "failed";
export type Phase = "forward" | "compensate";

export interface LogEntry {
	step: string;
	phase: Phase;
	outcome: Outcome;
	/** The drive (lease epoch) that made the call. */
	epoch: number;
}

export interface StepSpec {
	name: string;
	compensable: boolean;
	/** Calls of the step per drive before it counts as failed (1 + retries). */
	attempts: number;
}

export interface SagaSpec {
	steps: StepSpec[];
	/** Calls of one compensation per drive before the saga parks. */
	compensationAttempts: number;
	/** No compensations: a failed step parks the saga and is retried at its next drive. */
	forwardOnly?: boolean;
	/**
	 * Calls of a step per drive that may end `unavailable` before the step counts as failed, apart
	 * from its `attempts`, which then count the other calls. Unset: every call counts against `attempts`.
	 */
	unreachedAttempts?: number;
}

export type Decision =
	| { next: "step"; index: number }
	| { next: "compensate"; index: number; plan: number[] }
	| { next: "complete" }
	| { next: "compensated"; failed: number }
	| { next: "park"; index: number; phase: Phase };

/** Where the forward phase stands: every step done, a step to call, or the step that failed. */
export function forwardState(spec: SagaSpec, log: LogEntry[], epoch: number): { done: true } | { call: number } | { failed: number } {
	for (let i = 0; i < spec.steps.length; i++) {
		const step = spec.steps[i];
		const calls = log.filter(e => e.phase === "forward" && e.step === step.name);
		if (calls.some(e => e.outcome === "done")) continue;
		const last = calls[calls.length - 1];
		if (!last) return { call: i };
		if (last.outcome === "refused" || last.outcome === "failed") return { failed: i };
		const thisDrive = calls.filter(e => e.epoch === epoch);
		if (spec.unreachedAttempts === undefined) return thisDrive.length < step.attempts ? { call: i } : { failed: i };
		const unreached = thisDrive.filter(e => e.outcome === "unavailable").length;
		return thisDrive.length - unreached < step.attempts && unreached < spec.unreachedAttempts ? { call: i } : { failed: i };
	}
	return { done: true };
}

/** Whether a step may have taken effect: it answered, or one of its calls ended unknown. */
export function mayHaveTakenEffect(log: LogEntry[], step: string): boolean {
	return log.some(e => e.phase === "forward" && e.step === step && (e.outcome === "done" || e.outcome === "unknown" || e.outcome === "failed"));
}

/** The steps to compensate after step `failed` failed, last first. */
export function toCompensate(spec: SagaSpec, log: LogEntry[], failed: number): number[] {
	const out: number[] = [];
	for (let i = failed; i >= 0; i--) {
		const step = spec.steps[i];
		if (step.compensable && mayHaveTakenEffect(log, step.name)) out.push(i);
	}
	return out;
}

export interface DecideOptions {
	/** The saga's stored status says it compensates: it only compensates. */
	compensating?: boolean;
	/** The plan written when compensation began (step indexes, last first). */
	plan?: number[];
	/** This drive made every call the saga ever made (the first drive): its plan can leave out what never took effect. */
	knowsAll?: boolean;
}

/** Every step with a compensation, last first: the plan of a drive that cannot know what earlier drives did. */
export function everyCompensation(spec: SagaSpec): number[] {
	return spec.steps.map((s, i) => (s.compensable ? i : -1)).filter(i => i >= 0).reverse();
}

/** The next thing to do, from the log (this drive's calls and what earlier drives wrote). */
export function decide(spec: SagaSpec, log: LogEntry[], epoch: number, opts: DecideOptions = {}): Decision {
	const state = forwardState(spec, log, epoch);
	let plan = opts.plan;
	let failed: number;
	if (!opts.compensating && !log.some(e => e.phase === "compensate")) {
		if ("done" in state) return { next: "complete" };
		if ("call" in state) return { next: "step", index: state.call };
		if (spec.forwardOnly) return { next: "park", index: state.failed, phase: "forward" };
		failed = state.failed;
		plan ??= opts.knowsAll ? toCompensate(spec, log, failed) : everyCompensation(spec);
	} else {
		// The failed step is the first one not done (a resumed log may hold no calls of it in this drive).
		failed = "failed" in state ? state.failed : "call" in state ? state.call : spec.steps.length - 1;
		plan ??= opts.knowsAll ? toCompensate(spec, log, failed) : everyCompensation(spec);
	}
	for (const i of plan) {
		const name = spec.steps[i].name;
		const calls = log.filter(e => e.phase === "compensate" && e.step === name);
		if (calls.some(e => e.outcome === "done")) continue;
		const thisDrive = calls.filter(e => e.epoch === epoch).length;
		return thisDrive < spec.compensationAttempts ? { next: "compensate", index: i, plan } : { next: "park", index: i, phase: "compensate" };
	}
	return { next: "compensated", failed };
}

/**
 * The outcome of a call that threw, from Moleculer's own error classes and flags: no node for the
 * action, or a full queue on the callee, means no handler ran (`not-sent`); so does a callee known
 * but unreachable now (`unavailable`); a client error (MoleculerClientError, 4xx) is a refusal that took no effect;
 * anything else may have taken effect, and Moleculer's `retryable` says whether to call again.
 */
export function outcomeOf(err: unknown): Exclude<Outcome, "done"> {
	// Known but down: every endpoint unavailable (breaker open), or a node that does not have the
	// service yet answered (it is starting: "Service … is not found on '<node>' node").
	if (err instanceof Errors.ServiceNotAvailableError) return "unavailable";
	if (err instanceof Errors.ServiceNotFoundError) return (err as { data?: { nodeID?: string } }).data?.nodeID ? "unavailable" : "not-sent";
	if (err instanceof Errors.QueueIsFullError) return "not-sent";
	const e = err as { code?: number; retryable?: boolean } | undefined;
	if (err instanceof Errors.MoleculerClientError || (typeof e?.code === "number" && e.code >= 400 && e.code < 500 && !e.retryable)) return "refused";
	return e?.retryable ? "unknown" : "failed";
}
