/**
 * Payment providers behind one interface. The built-in simulated provider answers by token
 * (shared/API.md): approved, declined, insufficient funds, capture failure, slow.
 *
 * Every call carries the caller's idempotency key, as real providers take one (Stripe's
 * `Idempotency-Key`): a repeat with the same key is the same operation and never a second one.
 * That is what lets the payments service call the provider first and only then commit the
 * payment, its key's record and its events together (mixins/idempotency.mixin.ts): a crash in
 * between is healed by the retry, which gets the same authorisation back.
 */
import { createHash, randomUUID } from "node:crypto";
import { Errors } from "moleculer";

export interface Money {
	amount: number;
	currency: string;
}

export interface PaymentProvider {
	/** Holds `amount` on the card; the same key answers with the same authorisation (or decline). */
	authorize(token: string, amount: Money, key: string): Promise<{ reference: string }>;
	capture(reference: string, amount: Money, key: string): Promise<void>;
	void(reference: string, key: string): Promise<void>;
	refund(reference: string, amount: Money, key: string): Promise<void>;
}

/** A decline is the customer's problem, not the platform's: a client error that never trips a breaker. */
export class PaymentDeclinedError extends Errors.MoleculerClientError {
	constructor(type: "PAYMENT_DECLINED" | "INSUFFICIENT_FUNDS" | "CAPTURE_FAILED", message: string) {
		super(message, 402, type);
		this.name = "PaymentDeclinedError";
	}
}

const TOKENS: Record<string, "approve" | "decline" | "insufficient" | "capture_fails" | "slow"> = {
	tok_visa: "approve",
	tok_mastercard: "approve",
	tok_declined: "decline",
	tok_insufficient_funds: "insufficient",
	tok_capture_fails: "capture_fails",
	tok_slow: "slow",
};

export const KNOWN_TOKENS = Object.keys(TOKENS);

/** The card brand a token stands for, kept on the payment for support staff ("test" for the scenario tokens). */
export function brandOf(token: string): string {
	const m = /^tok_(visa|mastercard)$/.exec(token);
	return m ? m[1] : "test";
}

/** Keys the simulated provider remembers (a real provider keeps them 24 h); the oldest go first. */
const REMEMBERED_KEYS = 10_000;

/**
 * The simulated provider. Its answers depend only on the token and the key (the reference of an
 * authorisation is derived from the key), so a repeat after any crash — even of this process —
 * gets the same authorisation; a repeat within this process also answers at once, as a real
 * provider replays a stored response, and a concurrent repeat shares the first call.
 */
export class SimulatedProvider implements PaymentProvider {
	private readonly answers = new Map<string, { request: string; answer: Promise<{ reference: string }> }>();

	constructor(private readonly slowMs = 2000) {}

	authorize(token: string, amount: Money, key: string): Promise<{ reference: string }> {
		const request = `${token}:${amount.amount}:${amount.currency}`;
		const seen = this.answers.get(key);
		if (seen) {
			if (seen.request !== request) return Promise.reject(new Errors.MoleculerClientError("The provider saw this idempotency key with another request", 422, "IDEMPOTENCY_KEY_REUSED"));
			return seen.answer;
		}
		const answer = this.decide(token, key);
		// A failure of the call itself (not a decline) is not remembered: the key may be tried again.
		answer.catch(err => {
			if (!(err instanceof PaymentDeclinedError)) this.answers.delete(key);
		});
		this.answers.set(key, { request, answer });
		if (this.answers.size > REMEMBERED_KEYS) this.answers.delete(this.answers.keys().next().value!);
		return answer;
	}

	private async decide(token: string, key: string): Promise<{ reference: string }> {
		const behaviour = TOKENS[token];
		if (!behaviour) throw new Errors.MoleculerClientError("Unknown payment token", 422, "INVALID_PAYMENT_TOKEN", [{ field: "paymentToken", message: "unknown token" }]);
		if (behaviour === "decline") throw new PaymentDeclinedError("PAYMENT_DECLINED", "The card was declined");
		if (behaviour === "insufficient") throw new PaymentDeclinedError("INSUFFICIENT_FUNDS", "Insufficient funds");
		if (behaviour === "slow") await new Promise(r => setTimeout(r, this.slowMs));
		// The reference remembers how the simulated card behaves later (capture), and is the key's own.
		return { reference: `sim:${behaviour}:${createHash("sha256").update(key).digest("hex").slice(0, 32)}` };
	}

	async capture(reference: string, _amount: Money, _key: string): Promise<void> {
		if (reference.startsWith("sim:capture_fails:")) throw new PaymentDeclinedError("CAPTURE_FAILED", "The capture was refused");
	}

	async void(_reference: string, _key: string): Promise<void> {}

	async refund(_reference: string, _amount: Money, _key: string): Promise<void> {}
}

/** A key for a provider call that has no caller's key (an operator's refund): each call is its own operation. */
export function freshProviderKey(prefix: string): string {
	return `${prefix}:${randomUUID()}`;
}
