/**
 * Failed-login throttling per account (shared/API.md: 429 with Retry-After once an account has had
 * too many failed logins, from whatever addresses). Pure: the auth service keeps the state in its
 * database and applies these rules with a conditional update.
 *
 * - FREE_FAILURES failures in a row cost nothing more than the attempts; from then on the next
 *   attempt must wait, BASE_DELAY_MS after the FREE_FAILURES-th failure and twice as long after
 *   each further one, up to MAX_DELAY_MS. An attempt is counted before its password is checked
 *   (so parallel guesses cannot all slip through one open moment) and a success clears the count.
 * - While an account waits, attempts are refused with 429 and not counted: the wait never grows
 *   past MAX_DELAY_MS after the last counted failure, so a stranger hammering someone's account
 *   keeps them out for at most that long at a time.
 * - And not even that for its owner where they signed in before: a successful login marks its
 *   address as known for the account (for KNOWN_ADDRESS_DAYS), and attempts from a known address
 *   count in a bucket of their own — a stranger elsewhere cannot lock the owner out at home
 *   (OWASP's "slow down online guessing" with a known-device exemption, keyed by address).
 * - Counts fade: a bucket without a failure for RESET_AFTER_MS starts again from zero.
 * - Unknown emails are throttled exactly like real ones, so the throttle tells nobody which exist.
 */
import { createHash } from "node:crypto";

export interface ThrottlePolicy {
	FREE_FAILURES: number;
	/** LOGIN_THROTTLE_BASE_MS in the configuration. */
	BASE_DELAY_MS: number;
	/** LOGIN_THROTTLE_MAX_MS in the configuration. */
	MAX_DELAY_MS: number;
	RESET_AFTER_MS: number;
	KNOWN_ADDRESS_DAYS: number;
}

export const LOGIN_THROTTLE: ThrottlePolicy = {
	FREE_FAILURES: 5,
	BASE_DELAY_MS: 1000,
	MAX_DELAY_MS: 5 * 60_000,
	RESET_AFTER_MS: 24 * 3600_000,
	KNOWN_ADDRESS_DAYS: 30,
};

export interface ThrottleState {
	failures: number;
	/** Epoch ms before which attempts are refused, 0 when none. */
	blockedUntil: number;
	/** Epoch ms of the last counted attempt. */
	lastAt: number;
}

export const FRESH: ThrottleState = { failures: 0, blockedUntil: 0, lastAt: 0 };

/** The wait after `failures` counted failures, in ms. */
export function delayAfter(failures: number, policy: ThrottlePolicy = LOGIN_THROTTLE): number {
	const over = failures - policy.FREE_FAILURES;
	if (over < 0) return 0;
	return Math.min(policy.MAX_DELAY_MS, policy.BASE_DELAY_MS * 2 ** Math.min(over, 30));
}

/** The state as it stands now (faded if old). */
export function current(state: ThrottleState | undefined, now: number, policy: ThrottlePolicy = LOGIN_THROTTLE): ThrottleState {
	if (!state || !(now - state.lastAt <= policy.RESET_AFTER_MS)) return FRESH;
	return state;
}

/** Whether an attempt may be made now; if not, the seconds to wait. */
export function admit(state: ThrottleState, now: number): { allowed: true } | { allowed: false; retryAfterS: number } {
	if (state.blockedUntil > now) return { allowed: false, retryAfterS: Math.ceil((state.blockedUntil - now) / 1000) };
	return { allowed: true };
}

/** The state once an admitted attempt is counted (as a failure until it proves otherwise). */
export function countAttempt(state: ThrottleState, now: number, policy: ThrottlePolicy = LOGIN_THROTTLE): ThrottleState {
	const failures = state.failures + 1;
	const delay = delayAfter(failures, policy);
	return { failures, blockedUntil: delay ? now + delay : 0, lastAt: now };
}

/** The bucket of an attempt: the account, or the account at an address where it signed in before. */
export function bucketKey(email: string, knownAddress?: string): string {
	return digest(knownAddress === undefined ? `account:${email}` : `account:${email}|address:${knownAddress}`);
}

/** The key of "this address signed in to this account". */
export function addressKey(email: string, address: string): string {
	return digest(`known:${email}|${address}`);
}

function digest(s: string): string {
	return createHash("sha256").update(s).digest("hex");
}
