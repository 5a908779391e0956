import { Errors } from "moleculer";
import { KNOWN_TOKENS, PaymentDeclinedError, SimulatedProvider, brandOf } from "../../../lib/payments/provider";

const amount = { amount: 1999, currency: "USD" };

describe("the simulated payment provider", () => {
	const provider = new SimulatedProvider(5);

	it("knows exactly the tokens of the API", () => {
		expect([...KNOWN_TOKENS].sort()).toEqual(["tok_capture_fails", "tok_declined", "tok_insufficient_funds", "tok_mastercard", "tok_slow", "tok_visa"]);
	});

	it("approves visa and mastercard, each authorisation with its own reference, and captures, voids and refunds them", async () => {
		const visa = await provider.authorize("tok_visa", amount, "k-visa");
		const mc = await provider.authorize("tok_mastercard", amount, "k-mc");
		expect(visa.reference).toEqual(expect.any(String));
		expect(mc.reference).not.toBe(visa.reference);
		await expect(provider.capture(visa.reference, amount, "k-visa:capture")).resolves.toBeUndefined();
		await expect(provider.refund(visa.reference, amount, "k-visa:refund")).resolves.toBeUndefined();
		await expect(provider.void(mc.reference, "k-mc:void")).resolves.toBeUndefined();
	});

	it("honours the caller's key: a repeat is the same authorisation, also from another process, and another request with the key is refused", async () => {
		const first = await provider.authorize("tok_visa", amount, "k-same");
		expect(await provider.authorize("tok_visa", amount, "k-same")).toEqual(first);
		// A provider that forgot nothing but this process did (a restart): the key still names the same authorisation.
		expect(await new SimulatedProvider(5).authorize("tok_visa", amount, "k-same")).toEqual(first);
		expect((await provider.authorize("tok_visa", amount, "k-other")).reference).not.toBe(first.reference);
		await expect(provider.authorize("tok_visa", { amount: 1, currency: "USD" }, "k-same")).rejects.toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
		await expect(provider.authorize("tok_declined", amount, "k-no")).rejects.toMatchObject({ type: "PAYMENT_DECLINED" });
		await expect(provider.authorize("tok_declined", amount, "k-no")).rejects.toMatchObject({ type: "PAYMENT_DECLINED" });
	});

	it("declines tok_declined and tok_insufficient_funds with 402 client errors that a breaker ignores", async () => {
		for (const [token, type] of [["tok_declined", "PAYMENT_DECLINED"], ["tok_insufficient_funds", "INSUFFICIENT_FUNDS"]]) {
			const err = await provider.authorize(token, amount, `k-${token}`).catch(e => e);
			expect(err).toBeInstanceOf(PaymentDeclinedError);
			expect(err).toBeInstanceOf(Errors.MoleculerClientError);
			expect({ code: err.code, type: err.type, retryable: err.retryable }).toEqual({ code: 402, type, retryable: false });
		}
	});

	it("authorizes tok_capture_fails and then refuses its capture with CAPTURE_FAILED", async () => {
		const { reference } = await provider.authorize("tok_capture_fails", amount, "k-cf");
		await expect(provider.capture(reference, amount, "k-cf:capture")).rejects.toMatchObject({ code: 402, type: "CAPTURE_FAILED" });
		await expect(provider.void(reference, "k-cf:void")).resolves.toBeUndefined();
	});

	it("refuses any other token with 422 INVALID_PAYMENT_TOKEN naming the field", async () => {
		for (const token of ["tok_amex", "", "TOK_VISA", "tok_visa "]) {
			await expect(provider.authorize(token, amount, `k-bad-${token}`)).rejects.toMatchObject({ code: 422, type: "INVALID_PAYMENT_TOKEN", data: [{ field: "paymentToken", message: expect.any(String) }] });
		}
	});

	describe("tok_slow", () => {
		beforeEach(() => jest.useFakeTimers());
		afterEach(() => jest.useRealTimers());

		it("answers after 2 s by default, approved; a concurrent repeat shares the call and a later one answers at once", async () => {
			const slow = new SimulatedProvider();
			let answer: unknown;
			const pending = slow.authorize("tok_slow", amount, "k-slow").then(r => (answer = r));
			const repeat = slow.authorize("tok_slow", amount, "k-slow");
			await jest.advanceTimersByTimeAsync(1999);
			expect(answer).toBeUndefined();
			await jest.advanceTimersByTimeAsync(1);
			await pending;
			expect(answer).toEqual({ reference: expect.any(String) });
			expect(await repeat).toEqual(answer);
			expect(await slow.authorize("tok_slow", amount, "k-slow")).toEqual(answer);
		});
	});
});

describe("card brands", () => {
	it("are visa and mastercard for their tokens and test for the scenario tokens", () => {
		expect(["tok_visa", "tok_mastercard", "tok_declined", "tok_slow"].map(brandOf)).toEqual(["visa", "mastercard", "test", "test"]);
	});
});
