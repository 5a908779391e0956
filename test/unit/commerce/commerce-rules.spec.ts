import { allocate } from "../../../lib/inventory/allocation";
import { failureReason, orderNumber, subtotalOf, taxOf } from "../../../lib/orders/pricing";
import { SimulatedProvider } from "../../../lib/payments/provider";
import { assertMove, refundAmount, statusAfterRefund } from "../../../lib/payments/state";

describe("order pricing", () => {
	it("adds lines in cents and rounds tax half up", () => {
		const line = (amount: number, quantity: number) => ({ productId: "p", sku: "S", name: "n", unitPrice: { amount, currency: "USD" }, quantity, weightGrams: 1 });
		expect(subtotalOf([line(1999, 2), line(1, 3)])).toBe(4001);
		expect(taxOf(4001, 825)).toBe(330);
		expect(taxOf(5, 1000)).toBe(1);
	});

	it("numbers orders readably", () => {
		expect(orderNumber(new Date("2026-11-24T10:00:00Z"), () => 0)).toBe("MC-261124-222222");
		expect(orderNumber(new Date())).toMatch(/^MC-\d{6}-[2-9A-HJ-NP-Z]{6}$/);
	});

	it("maps a failed step to the failure reason of the API", () => {
		expect(failureReason("authorize", { type: "PAYMENT_DECLINED" })).toBe("PAYMENT_DECLINED");
		expect(failureReason("authorize", { type: "INSUFFICIENT_FUNDS" })).toBe("INSUFFICIENT_FUNDS");
		expect(failureReason("authorize", { type: "SERVICE_NOT_AVAILABLE" })).toBe("PAYMENT_UNAVAILABLE");
		expect(failureReason("authorize", { type: "REQUEST_TIMEOUT" })).toBe("PAYMENT_UNAVAILABLE");
		expect(failureReason("reserve", { type: "OUT_OF_STOCK" })).toBe("OUT_OF_STOCK");
		expect(failureReason("reserve", { type: "UNKNOWN_SKU", code: 404 })).toBe("OUT_OF_STOCK");
		// The warehouse did not answer: nothing is known about stock (adversary: inventory node paused 20 s).
		expect(failureReason("reserve", { type: "REQUEST_TIMEOUT", code: 504 })).toBe("FULFILLMENT_FAILED");
		expect(failureReason("reserve", { type: "SERVICE_NOT_AVAILABLE", code: 404 })).toBe("FULFILLMENT_FAILED");
		expect(failureReason("reserve", { type: null, code: 500 })).toBe("FULFILLMENT_FAILED");
		expect(failureReason("fulfill", { type: "X" })).toBe("FULFILLMENT_FAILED");
		expect(failureReason("capture", { type: "CAPTURE_FAILED" })).toBe("PAYMENT_DECLINED");
		// A capture that failed on the server's side (PostgreSQL out of connections: no type, no 4xx) is not a decline.
		expect(failureReason("capture", { type: null, code: null })).toBe("PAYMENT_UNAVAILABLE");
		expect(failureReason("capture", { type: null, code: 500 })).toBe("PAYMENT_UNAVAILABLE");
		expect(failureReason("capture", { type: "ILLEGAL_TRANSITION", code: 409 })).toBe("PAYMENT_DECLINED");
	});
});

describe("payment rules", () => {
	it("refuses illegal moves", () => {
		expect(() => assertMove("capture", "AUTHORIZED")).not.toThrow();
		expect(() => assertMove("capture", "VOIDED")).toThrow(expect.objectContaining({ code: 409, type: "ILLEGAL_PAYMENT_TRANSITION" }));
		expect(() => assertMove("void", "CAPTURED")).toThrow(expect.objectContaining({ code: 409 }));
		expect(() => assertMove("refund", "PARTIALLY_REFUNDED")).not.toThrow();
	});

	it("never refunds more than was captured", () => {
		expect(refundAmount(5000, 0)).toBe(5000);
		expect(refundAmount(5000, 3000, 2000)).toBe(2000);
		expect(() => refundAmount(5000, 3000, 2001)).toThrow(expect.objectContaining({ type: "REFUND_EXCEEDS_CAPTURE" }));
		expect(() => refundAmount(5000, 5000)).toThrow(expect.objectContaining({ code: 409 }));
		expect(statusAfterRefund(5000, 2000)).toBe("PARTIALLY_REFUNDED");
		expect(statusAfterRefund(5000, 5000)).toBe("REFUNDED");
	});

	it("simulates the tokens of the API", async () => {
		const p = new SimulatedProvider(10);
		const amount = { amount: 100, currency: "USD" };
		await expect(p.authorize("tok_visa", amount, "a")).resolves.toEqual({ reference: expect.stringMatching(/^sim:approve:/) });
		await expect(p.authorize("tok_declined", amount, "b")).rejects.toMatchObject({ code: 402, type: "PAYMENT_DECLINED" });
		await expect(p.authorize("tok_insufficient_funds", amount, "c")).rejects.toMatchObject({ type: "INSUFFICIENT_FUNDS" });
		await expect(p.authorize("tok_unknown", amount, "d")).rejects.toMatchObject({ code: 422, type: "INVALID_PAYMENT_TOKEN" });
		const { reference } = await p.authorize("tok_capture_fails", amount, "e");
		await expect(p.capture(reference, amount, "e:capture")).rejects.toMatchObject({ type: "CAPTURE_FAILED" });
		const t0 = Date.now();
		await p.authorize("tok_slow", amount, "f");
		expect(Date.now() - t0).toBeGreaterThanOrEqual(9);
	});
});

describe("stock allocation", () => {
	const stock = [
		{ sku: "A", warehouseId: "east", available: 5 },
		{ sku: "A", warehouseId: "west", available: 10 },
		{ sku: "B", warehouseId: "west", available: 1 },
	];

	it("ships from one warehouse when one holds every line", () => {
		expect(allocate([{ sku: "A", quantity: 2 }, { sku: "B", quantity: 1 }], stock)).toEqual({ ok: true, allocations: [{ warehouseId: "west", sku: "A", quantity: 2 }, { warehouseId: "west", sku: "B", quantity: 1 }] });
	});

	it("splits a line across warehouses when it must", () => {
		expect(allocate([{ sku: "A", quantity: 12 }], stock)).toEqual({ ok: true, allocations: [{ warehouseId: "west", sku: "A", quantity: 10 }, { warehouseId: "east", sku: "A", quantity: 2 }] });
	});

	it("names every short line and allocates nothing", () => {
		expect(allocate([{ sku: "A", quantity: 16 }, { sku: "B", quantity: 2 }, { sku: "C", quantity: 1 }], stock)).toEqual({
			ok: false,
			short: [{ sku: "A", requested: 16, available: 15 }, { sku: "B", requested: 2, available: 1 }, { sku: "C", requested: 1, available: 0 }],
		});
	});

	it("merges repeated lines of one sku", () => {
		expect(allocate([{ sku: "B", quantity: 1 }, { sku: "B", quantity: 1 }], stock)).toMatchObject({ ok: false, short: [{ sku: "B", requested: 2 }] });
	});
});
