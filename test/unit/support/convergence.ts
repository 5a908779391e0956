/**
 * A property-test harness for event consumers (issue 8): a consumer's pure decision (`apply`) is run
 * against the same events delivered in order, and delivered shuffled, duplicated and by several
 * concurrent handlers that each read the state, decide, and write conditionally on the version
 * they read (as the services do with a locked row or `WHERE version = …`); a handler whose write
 * lost, or whose decision says "retry", puts its event back in the queue (the bus redelivers).
 * Library: fast-check (arbitraries and shrinking).
 */
import fc from "fast-check";

export const RETRY = Symbol("retry");

export interface ConsumerModel<S, E> {
	initial: S;
	/** The new state, or RETRY when the event cannot apply yet. Must not mutate `s`. */
	apply(s: S, e: E): S | typeof RETRY;
}

export interface Delivery<E> {
	/** Each event at least once, some several times, in any order. */
	queue: E[];
	/** At each step: which in-flight handler finishes (index modulo), or -1 to start a new one. */
	schedule: number[];
	/** How many handlers may run at once (1: one at a time). */
	concurrency: number;
}

/** Applies events one by one, in order (the reference: every event applies at its turn). */
export function inOrder<S, E>(m: ConsumerModel<S, E>, events: E[]): S {
	let s = m.initial;
	for (const e of events) {
		const next = m.apply(s, e);
		if (next === RETRY) throw new Error(`in-order delivery retried ${JSON.stringify(e)}`);
		s = next;
	}
	return s;
}

/**
 * Delivers as `d` says: handlers read (state, version), decide, and commit only if the version is
 * still the one they read; RETRY or a lost write requeues the event at the back. Returns the final
 * state once the queue is empty (throws if it never empties: a livelock).
 */
export function delivered<S, E>(m: ConsumerModel<S, E>, d: Delivery<E>): S {
	let state = m.initial;
	let version = 0;
	const queue = [...d.queue];
	const inFlight: { e: E; read: S; version: number; born: number }[] = [];
	let step = 0;
	for (let guard = 0; queue.length || inFlight.length; guard++) {
		if (guard > 100_000) throw new Error("deliveries never settle");
		const pick = d.schedule.length ? d.schedule[step++ % d.schedule.length] : -1;
		if (queue.length && (inFlight.length < d.concurrency && (pick < 0 || !inFlight.length))) {
			inFlight.push({ e: queue.shift()!, read: state, version, born: guard });
			continue;
		}
		// Fair: a handler in flight for long finishes next (a real handler does not stall forever).
		const old = inFlight.findIndex(h => guard - h.born > 8);
		const [h] = inFlight.splice(old >= 0 ? old : Math.abs(pick) % inFlight.length, 1);
		const next = m.apply(h.read, h.e);
		if (next === RETRY || h.version !== version) {
			queue.push(h.e);
			continue;
		}
		if (next !== h.read) {
			state = next;
			version++;
		}
	}
	return state;
}

/** Deliveries of `events`: every one at least once, up to `maxCopies` times, shuffled, with a random schedule. */
export function deliveries<E>(events: E[], maxCopies = 3): fc.Arbitrary<Delivery<E>> {
	return fc
		.record({
			copies: fc.array(fc.integer({ min: 1, max: maxCopies }), { minLength: events.length, maxLength: events.length }),
			order: fc.array(fc.nat(), { minLength: events.length * maxCopies, maxLength: events.length * maxCopies }),
			schedule: fc.array(fc.integer({ min: -1, max: 5 }), { minLength: 1, maxLength: 20 }),
			concurrency: fc.integer({ min: 1, max: 4 }),
		})
		.map(({ copies, order, schedule, concurrency }) => {
			const all = events.flatMap((e, i) => Array.from({ length: copies[i] }, () => e));
			const keyed = all.map((e, i) => ({ e, k: order[i] ?? i }));
			keyed.sort((a, b) => a.k - b.k);
			return { queue: keyed.map(x => x.e), schedule, concurrency };
		});
}
