/**
 * The saga's decisions from its log alone (lib/saga/decide.ts): what runs next, what is retried,
 * what must be compensated — and what must not, because its callee guarantees it took no effect.
 */
import { Errors } from "moleculer";
import { type LogEntry, type Outcome, type SagaSpec, decide as decideWith, everyCompensation, mayHaveTakenEffect, outcomeOf, toCompensate } from "../../../lib/saga/decide";

const spec: SagaSpec = {
	steps: [
		{ name: "authorize", compensable: true, attempts: 3 },
		{ name: "reserve", compensable: true, attempts: 3 },
		{ name: "fulfill", compensable: true, attempts: 3 },
		{ name: "capture", compensable: true, attempts: 3 },
		{ name: "commit", compensable: false, attempts: 4 },
	],
	compensationAttempts: 2,
};

const f = (step: string, outcome: Outcome, epoch = 1): LogEntry => ({ step, phase: "forward", outcome, epoch });
const c = (step: string, outcome: Outcome, epoch = 1): LogEntry => ({ step, phase: "compensate", outcome, epoch });
const names = (indexes: number[]) => indexes.map(i => spec.steps[i].name);
/** As the first drive decides: it made every call itself. */
const decide = (sp: SagaSpec, log: LogEntry[], epoch: number, compensating = false) => decideWith(sp, log, epoch, { compensating, knowsAll: epoch === 1 });

describe("the saga's next move", () => {
	it("runs the steps in order and completes when every one answered", () => {
		expect(decide(spec, [], 1)).toEqual({ next: "step", index: 0 });
		expect(decide(spec, [f("authorize", "done")], 1)).toEqual({ next: "step", index: 1 });
		expect(decide(spec, ["authorize", "reserve", "fulfill", "capture", "commit"].map(s => f(s, "done")), 1)).toEqual({ next: "complete" });
	});

	it("starts again from the first step when a resumed saga has no log: the steps answer from their records", () => {
		expect(decide(spec, [], 2)).toEqual({ next: "step", index: 0 });
	});

	it("retries a step whose outcome is unknown or that never got through, up to its attempts in one drive", () => {
		expect(decide(spec, [f("authorize", "done"), f("reserve", "unknown")], 1)).toEqual({ next: "step", index: 1 });
		expect(decide(spec, [f("authorize", "done"), f("reserve", "not-sent"), f("reserve", "unknown")], 1)).toEqual({ next: "step", index: 1 });
		const used = [f("authorize", "done"), f("reserve", "unknown"), f("reserve", "unknown"), f("reserve", "unknown")];
		expect(decide(spec, used, 1)).toEqual({ next: "compensate", index: 1, plan: [1, 0] });
		// A new drive (after a takeover) has its own attempts.
		expect(decide(spec, used, 2)).toEqual({ next: "step", index: 1 });
	});

	it("with an unreached budget, waits out a callee that is unavailable apart from the step's attempts; a callee no node has fails fast", () => {
		const patient: SagaSpec = { ...spec, unreachedAttempts: 5 };
		const unreached = (n: number, epoch = 1) => Array.from({ length: n }, () => f("reserve", "unavailable", epoch));
		// Four calls found the callee unavailable: more than the step's 3 attempts, still called again.
		expect(decide(patient, [f("authorize", "done"), ...unreached(4)], 1)).toEqual({ next: "step", index: 1 });
		// The fifth uses the budget up: the step failed, and only what came before is compensated.
		expect(decide(patient, [f("authorize", "done"), ...unreached(5)], 1)).toEqual({ next: "compensate", index: 0, plan: [0] });
		// Calls that reached a node still count against the attempts, whatever the unreached ones.
		const reached = [f("authorize", "done"), f("reserve", "unknown"), f("reserve", "unavailable"), f("reserve", "unknown")];
		expect(decide(patient, reached, 1)).toEqual({ next: "step", index: 1 });
		expect(decide(patient, [...reached, f("reserve", "unknown")], 1)).toEqual({ next: "compensate", index: 1, plan: [1, 0] });
		// A new drive has a new budget.
		expect(decide(patient, [f("authorize", "done"), ...unreached(5)], 2)).toEqual({ next: "step", index: 1 });
		// No node has the action at all: the step's attempts, as before.
		expect(decide(patient, [f("authorize", "done"), ...Array.from({ length: 3 }, () => f("reserve", "not-sent"))], 1)).toEqual({ next: "compensate", index: 0, plan: [0] });
		// Without the budget, every call counts against the attempts (the rule above).
		expect(decide(spec, [f("authorize", "done"), ...unreached(3)], 1)).toEqual({ next: "compensate", index: 0, plan: [0] });
	});

	it("does not retry a refusal, nor a server error that says a retry will not help", () => {
		expect(decide(spec, [f("authorize", "refused")], 1)).toEqual({ next: "compensated", failed: 0 });
		expect(decide(spec, [f("authorize", "done"), f("reserve", "failed")], 1)).toEqual({ next: "compensate", index: 1, plan: [1, 0] });
	});

	it("compensates nothing of a step its callee refused (all-or-nothing: 409 OUT_OF_STOCK from reserve), only what came before", () => {
		const log = [f("authorize", "done"), f("reserve", "refused")];
		expect(names(toCompensate(spec, log, 1))).toEqual(["authorize"]);
		expect(decide(spec, log, 1)).toEqual({ next: "compensate", index: 0, plan: [0] });
		expect(decide(spec, [...log, c("authorize", "done")], 1)).toEqual({ next: "compensated", failed: 1 });
	});

	it("compensates a refused step after all when an earlier call of it timed out: that one may have taken effect", () => {
		const log = [f("authorize", "done"), f("reserve", "unknown"), f("reserve", "refused")];
		expect(mayHaveTakenEffect(log, "reserve")).toBe(true);
		expect(names(toCompensate(spec, log, 1))).toEqual(["reserve", "authorize"]);
	});

	it("compensates nothing of a step that never reached a node", () => {
		const log = [f("authorize", "not-sent"), f("authorize", "not-sent"), f("authorize", "not-sent")];
		expect(decide(spec, log, 1)).toEqual({ next: "compensated", failed: 0 });
	});

	it("compensates every step that may have taken effect, last first, each once", () => {
		const log = [f("authorize", "done"), f("reserve", "done"), f("fulfill", "done"), f("capture", "refused")];
		expect(names(toCompensate(spec, log, 3))).toEqual(["fulfill", "reserve", "authorize"]);
		expect(decide(spec, [...log, c("fulfill", "done")], 1)).toEqual({ next: "compensate", index: 1, plan: [2, 1, 0] });
		expect(decide(spec, [...log, c("fulfill", "done"), c("reserve", "unknown")], 1)).toEqual({ next: "compensate", index: 1, plan: [2, 1, 0] });
		expect(decide(spec, [...log, c("fulfill", "done"), c("reserve", "done"), c("authorize", "done")], 1)).toEqual({ next: "compensated", failed: 3 });
	});

	it("parks the saga when a compensation keeps failing within one drive, and tries again in the next", () => {
		const log = [f("authorize", "done"), f("reserve", "refused"), c("authorize", "unknown"), c("authorize", "refused")];
		expect(decide(spec, log, 1)).toEqual({ next: "park", index: 0, phase: "compensate" });
		expect(decideWith(spec, log, 2, { compensating: true, plan: [0] })).toEqual({ next: "compensate", index: 0, plan: [0] });
	});

	it("compensates every step when a drive that took the saga over has to give up: earlier drives may have gone further than it saw", () => {
		// Drive 2 replayed authorize, then could not reach the warehouse: drive 1 may have reserved, fulfilled and captured.
		const log = [f("authorize", "done", 2), f("reserve", "not-sent", 2), f("reserve", "not-sent", 2), f("reserve", "not-sent", 2)];
		expect(everyCompensation(spec)).toEqual([3, 2, 1, 0]);
		expect(decideWith(spec, log, 2)).toEqual({ next: "compensate", index: 3, plan: [3, 2, 1, 0] });
		// The first drive, knowing it never reached the warehouse, only voids.
		expect(decideWith(spec, log.map(e => ({ ...e, epoch: 1 })), 1, { knowsAll: true })).toEqual({ next: "compensate", index: 0, plan: [0] });
	});

	it("follows the plan written when compensation began, in every later drive", () => {
		const log = [f("authorize", "done"), f("reserve", "refused"), c("authorize", "unknown")];
		expect(decideWith(spec, log, 3, { compensating: true, plan: [0] })).toEqual({ next: "compensate", index: 0, plan: [0] });
		expect(decideWith(spec, [...log, c("authorize", "done", 3)], 3, { compensating: true, plan: [0] })).toEqual({ next: "compensated", failed: 1 });
	});

	it("keeps compensating once the saga says so, even where its log shows a step still to call", () => {
		const log = [f("authorize", "done"), f("reserve", "unknown")];
		expect(decideWith(spec, log, 2, { compensating: true, plan: [1, 0] })).toEqual({ next: "compensate", index: 1, plan: [1, 0] });
	});

	it("compensates every step when an operator abandons a saga whose progress was never written", () => {
		expect(decideWith(spec, [], 3, { compensating: true })).toEqual({ next: "compensate", index: 3, plan: [3, 2, 1, 0] });
		expect(decideWith(spec, [c("capture", "done"), c("fulfill", "done"), c("reserve", "done"), c("authorize", "done")], 3, { compensating: true })).toEqual({ next: "compensated", failed: 0 });
	});

	it("parks a forward-only saga whose step keeps failing, and retries that step in its next drive", () => {
		const cancel: SagaSpec = { steps: [{ name: "void", compensable: false, attempts: 2 }, { name: "refund", compensable: false, attempts: 2 }], compensationAttempts: 2, forwardOnly: true };
		const log = [f("void", "done"), f("refund", "unknown"), f("refund", "unknown")];
		expect(decide(cancel, log, 1)).toEqual({ next: "park", index: 1, phase: "forward" });
		expect(decide(cancel, log, 2)).toEqual({ next: "step", index: 1 });
		expect(decide(cancel, [...log, f("refund", "done", 2)], 2)).toEqual({ next: "complete" });
	});
});

describe("the outcome of a call, from Moleculer's error classes", () => {
	it("says a call never reached a handler when no node has the action, none is available or its queue is full", () => {
		expect(outcomeOf(new Errors.ServiceNotFoundError({ action: "payments.authorize" }))).toBe("not-sent");
		// Known but down (breaker open, node unavailable), or a node still starting its services.
		expect(outcomeOf(new Errors.ServiceNotAvailableError({ action: "payments.authorize" }))).toBe("unavailable");
		expect(outcomeOf(new Errors.ServiceNotFoundError({ action: "warehouse.reserve", nodeID: "inventory-1" }))).toBe("unavailable");
		expect(outcomeOf(new Errors.QueueIsFullError({ action: "payments.authorize" }))).toBe("not-sent");
	});

	it("calls a client error a refusal, whatever its type", () => {
		expect(outcomeOf(new Errors.MoleculerClientError("Not enough stock", 409, "OUT_OF_STOCK"))).toBe("refused");
		expect(outcomeOf(new Errors.ValidationError("bad"))).toBe("refused");
		// As it arrives from another node: a plain object with the fields.
		expect(outcomeOf({ code: 402, type: "PAYMENT_DECLINED", retryable: false })).toBe("refused");
	});

	it("leaves a timeout or a retryable server error unknown, and a non-retryable one failed", () => {
		expect(outcomeOf(new Errors.RequestTimeoutError({ action: "warehouse.reserve", nodeID: "n1" }))).toBe("unknown");
		expect(outcomeOf(new Errors.MoleculerServerError("db down", 500, "DB"))).toBe("unknown");
		expect(outcomeOf(new Error("boom"))).toBe("failed");
		expect(outcomeOf(new Errors.MoleculerError("boom", 500))).toBe("failed");
	});
});
