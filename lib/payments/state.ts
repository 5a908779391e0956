/**
 * The payment state machine:
 *
 *   AUTHORIZED ─capture→ CAPTURED ─refund→ PARTIALLY_REFUNDED ─refund→ REFUNDED
 *        └────void→ VOIDED              └──────────refund (all)──────────┘
 *   FAILED (a declined authorisation) is terminal, like VOIDED and REFUNDED.
 *
 * Refunds never exceed what was captured.
 */
import { ConflictError } from "../errors";

export type PaymentStatus = "AUTHORIZED" | "CAPTURED" | "PARTIALLY_REFUNDED" | "REFUNDED" | "VOIDED" | "FAILED";
export type PaymentMove = "capture" | "void" | "refund";

export const PAYMENT_STATUSES: readonly PaymentStatus[] = ["AUTHORIZED", "CAPTURED", "PARTIALLY_REFUNDED", "REFUNDED", "VOIDED", "FAILED"];

/** From which statuses each move may start. */
const FROM: Record<PaymentMove, readonly PaymentStatus[]> = {
	capture: ["AUTHORIZED"],
	void: ["AUTHORIZED"],
	refund: ["CAPTURED", "PARTIALLY_REFUNDED"],
};

export function canMove(op: PaymentMove, from: PaymentStatus): boolean {
	return FROM[op].includes(from);
}

/** The statuses a move may start from (for the conditional UPDATE that makes it). */
export function movableFrom(op: PaymentMove): readonly PaymentStatus[] {
	return FROM[op];
}

export function assertMove(op: PaymentMove, from: PaymentStatus): void {
	if (!canMove(op, from)) throw new ConflictError(`Cannot ${op} a payment that is ${from}`, "ILLEGAL_PAYMENT_TRANSITION", { status: from, operation: op });
}

/** The amount a refund request stands for (all that is left unless `requested`), checked against what is left. */
export function refundAmount(captured: number, refunded: number, requested?: number): number {
	const left = captured - refunded;
	const amount = requested ?? left;
	if (amount <= 0 || amount > left) throw new ConflictError(`Refund of ${amount} exceeds the ${left} left to refund`, "REFUND_EXCEEDS_CAPTURE", { left });
	return amount;
}

export function statusAfterRefund(captured: number, refundedTotal: number): PaymentStatus {
	return refundedTotal >= captured ? "REFUNDED" : "PARTIALLY_REFUNDED";
}

/** The status a legal move leads to. */
export function nextStatus(op: PaymentMove, from: PaymentStatus, amounts: { captured: number; refunded: number; refund?: number } = { captured: 0, refunded: 0 }): PaymentStatus {
	assertMove(op, from);
	if (op === "capture") return "CAPTURED";
	if (op === "void") return "VOIDED";
	return statusAfterRefund(amounts.captured, amounts.refunded + refundAmount(amounts.captured, amounts.refunded, amounts.refund));
}
