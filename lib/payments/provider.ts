/**
 * Payment providers behind one interface. The built-in simulated provider answers by token
 * (shared/API.md): approved, declined, insufficient funds, capture failure, slow.
 */
import { randomUUID } from "node:crypto";
import { Errors } from "moleculer";

export interface Money {
	amount: number;
	currency: string;
}

export interface PaymentProvider {
	authorize(token: string, amount: Money): Promise<{ reference: string }>;
	capture(reference: string, amount: Money): Promise<void>;
	void(reference: string): Promise<void>;
	refund(reference: string, amount: Money): Promise<void>;
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

export class SimulatedProvider implements PaymentProvider {
	constructor(private readonly slowMs = 2000) {}

	async authorize(token: string, _amount: Money): Promise<{ reference: string }> {
		const behaviour = TOKENS[token];
		if (!behaviour) throw new Errors.MoleculerClientError("Unknown payment token", 422, "INVALID_PAYMENT_TOKEN", [{ field: "paymentToken", message: "unknown token" }]);
		if (behaviour === "decline") throw new PaymentDeclinedError("PAYMENT_DECLINED", "The card was declined");
		if (behaviour === "insufficient") throw new PaymentDeclinedError("INSUFFICIENT_FUNDS", "Insufficient funds");
		if (behaviour === "slow") await new Promise(r => setTimeout(r, this.slowMs));
		// The reference remembers how the simulated card behaves later (capture).
		return { reference: `sim:${behaviour}:${randomUUID()}` };
	}

	async capture(reference: string, _amount?: Money): Promise<void> {
		if (reference.startsWith("sim:capture_fails:")) throw new PaymentDeclinedError("CAPTURE_FAILED", "The capture was refused");
	}

	async void(_reference: string): Promise<void> {}

	async refund(_reference: string, _amount: Money): Promise<void> {}
}
