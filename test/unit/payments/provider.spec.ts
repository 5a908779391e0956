import { Errors } from "moleculer";
import { KNOWN_TOKENS, PaymentDeclinedError, SimulatedProvider, brandOf } from "../../../lib/payments/provider";

const amount = { amount: 1999, currency: "USD" };

describe("the simulated payment provider", () => {
	const provider = new SimulatedProvider(5);

	it("knows exactly the tokens of the API", () => {
		expect([...KNOWN_TOKENS].sort()).toEqual(["tok_capture_fails", "tok_declined", "tok_insufficient_funds", "tok_mastercard", "tok_slow", "tok_visa"]);
	});

	it("approves visa and mastercard, each authorisation with its own reference, and captures, voids and refunds them", async () => {
		const visa = await provider.authorize("tok_visa", amount);
		const mc = await provider.authorize("tok_mastercard", amount);
		expect(visa.reference).toEqual(expect.any(String));
		expect(mc.reference).not.toBe(visa.reference);
		await expect(provider.capture(visa.reference, amount)).resolves.toBeUndefined();
		await expect(provider.refund(visa.reference, amount)).resolves.toBeUndefined();
		await expect(provider.void(mc.reference)).resolves.toBeUndefined();
	});

	it("declines tok_declined and tok_insufficient_funds with 402 client errors that a breaker ignores", async () => {
		for (const [token, type] of [["tok_declined", "PAYMENT_DECLINED"], ["tok_insufficient_funds", "INSUFFICIENT_FUNDS"]]) {
			const err = await provider.authorize(token, amount).catch(e => e);
			expect(err).toBeInstanceOf(PaymentDeclinedError);
			expect(err).toBeInstanceOf(Errors.MoleculerClientError);
			expect({ code: err.code, type: err.type, retryable: err.retryable }).toEqual({ code: 402, type, retryable: false });
		}
	});

	it("authorizes tok_capture_fails and then refuses its capture with CAPTURE_FAILED", async () => {
		const { reference } = await provider.authorize("tok_capture_fails", amount);
		await expect(provider.capture(reference, amount)).rejects.toMatchObject({ code: 402, type: "CAPTURE_FAILED" });
		await expect(provider.void(reference)).resolves.toBeUndefined();
	});

	it("refuses any other token with 422 INVALID_PAYMENT_TOKEN naming the field", async () => {
		for (const token of ["tok_amex", "", "TOK_VISA", "tok_visa "]) {
			await expect(provider.authorize(token, amount)).rejects.toMatchObject({ code: 422, type: "INVALID_PAYMENT_TOKEN", data: [{ field: "paymentToken", message: expect.any(String) }] });
		}
	});

	describe("tok_slow", () => {
		beforeEach(() => jest.useFakeTimers());
		afterEach(() => jest.useRealTimers());

		it("answers after 2 s by default, approved", async () => {
			let answer: unknown;
			const pending = new SimulatedProvider().authorize("tok_slow", amount).then(r => (answer = r));
			await jest.advanceTimersByTimeAsync(1999);
			expect(answer).toBeUndefined();
			await jest.advanceTimersByTimeAsync(1);
			await pending;
			expect(answer).toEqual({ reference: expect.any(String) });
		});
	});
});

describe("card brands", () => {
	it("are visa and mastercard for their tokens and test for the scenario tokens", () => {
		expect(["tok_visa", "tok_mastercard", "tok_declined", "tok_slow"].map(brandOf)).toEqual(["visa", "mastercard", "test", "test"]);
	});
});
