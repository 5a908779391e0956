/**
 * The payment state machine. Refunds move CAPTURED → PARTIALLY_REFUNDED → REFUNDED and never
 * exceed what was captured.
 */
import { ConflictError } from "../errors";

export type PaymentStatus = "AUTHORIZED" | "CAPTURED" | "PARTIALLY_REFUNDED" | "REFUNDED" | "VOIDED" | "FAILED";

const MOVES: Record<string, PaymentStatus[]> = {
	capture: ["AUTHORIZED"],
	void: ["AUTHORIZED"],
	refund: ["CAPTURED", "PARTIALLY_REFUNDED"],
};

export function assertMove(op: "capture" | "void" | "refund", from: PaymentStatus): void {
	if (!MOVES[op].includes(from)) throw new ConflictError(`Cannot ${op} a payment that is ${from}`, "ILLEGAL_PAYMENT_TRANSITION");
}

/** The amount a refund request stands for, checked against what is left to refund. */
export function refundAmount(captured: number, refunded: number, requested?: number): number {
	const left = captured - refunded;
	const amount = requested ?? left;
	if (amount <= 0 || amount > left) throw new ConflictError(`Refund of ${amount} exceeds the ${left} left to refund`, "REFUND_EXCEEDS_CAPTURE", { left });
	return amount;
}

export function statusAfterRefund(captured: number, refundedTotal: number): PaymentStatus {
	return refundedTotal >= captured ? "REFUNDED" : "PARTIALLY_REFUNDED";
}
