import { PAYMENT_STATUSES, type PaymentMove, type PaymentStatus, assertMove, canMove, nextStatus, refundAmount, statusAfterRefund } from "../../../lib/payments/state";

describe("the payment state machine", () => {
	it("allows exactly capture and void from AUTHORIZED, refunds from CAPTURED and PARTIALLY_REFUNDED, nothing else", () => {
		const allowed: Record<string, PaymentStatus[]> = {};
		for (const op of ["capture", "void", "refund"] as PaymentMove[]) allowed[op] = PAYMENT_STATUSES.filter(s => canMove(op, s));
		expect(allowed).toEqual({ capture: ["AUTHORIZED"], void: ["AUTHORIZED"], refund: ["CAPTURED", "PARTIALLY_REFUNDED"] });
	});

	it("refuses an illegal move with 409 ILLEGAL_PAYMENT_TRANSITION naming the status and the move", () => {
		expect(() => assertMove("capture", "VOIDED")).toThrow(expect.objectContaining({ code: 409, type: "ILLEGAL_PAYMENT_TRANSITION", data: { status: "VOIDED", operation: "capture" } }));
		expect(() => assertMove("void", "CAPTURED")).toThrow(expect.objectContaining({ code: 409, type: "ILLEGAL_PAYMENT_TRANSITION" }));
		expect(() => assertMove("refund", "AUTHORIZED")).toThrow(expect.objectContaining({ code: 409, type: "ILLEGAL_PAYMENT_TRANSITION" }));
		expect(() => assertMove("refund", "FAILED")).toThrow(expect.objectContaining({ code: 409 }));
	});

	it("leads AUTHORIZED to CAPTURED or VOIDED, and refunds to PARTIALLY_REFUNDED then REFUNDED", () => {
		expect(nextStatus("capture", "AUTHORIZED")).toBe("CAPTURED");
		expect(nextStatus("void", "AUTHORIZED")).toBe("VOIDED");
		expect(nextStatus("refund", "CAPTURED", { captured: 5000, refunded: 0, refund: 2000 })).toBe("PARTIALLY_REFUNDED");
		expect(nextStatus("refund", "PARTIALLY_REFUNDED", { captured: 5000, refunded: 2000, refund: 3000 })).toBe("REFUNDED");
		expect(nextStatus("refund", "PARTIALLY_REFUNDED", { captured: 5000, refunded: 2000 })).toBe("REFUNDED");
		expect(statusAfterRefund(5000, 4999)).toBe("PARTIALLY_REFUNDED");
	});

	it("refunds what is left unless an amount is asked, and never more than was captured", () => {
		expect(refundAmount(5000, 0)).toBe(5000);
		expect(refundAmount(5000, 1000)).toBe(4000);
		expect(refundAmount(5000, 1000, 4000)).toBe(4000);
		expect(() => refundAmount(5000, 1000, 4001)).toThrow(expect.objectContaining({ code: 409, type: "REFUND_EXCEEDS_CAPTURE", data: { left: 4000 } }));
		expect(() => refundAmount(5000, 5000)).toThrow(expect.objectContaining({ type: "REFUND_EXCEEDS_CAPTURE", data: { left: 0 } }));
		expect(() => refundAmount(5000, 0, 0)).toThrow(expect.objectContaining({ type: "REFUND_EXCEEDS_CAPTURE" }));
		expect(() => nextStatus("refund", "CAPTURED", { captured: 100, refunded: 0, refund: 101 })).toThrow(expect.objectContaining({ type: "REFUND_EXCEEDS_CAPTURE" }));
	});
});
