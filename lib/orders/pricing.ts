/**
 * Order totals, computed on the server from catalog prices: never from what the client sent.
 */
export interface PricedLine {
	productId: string;
	sku: string;
	name: string;
	unitPrice: { amount: number; currency: string };
	quantity: number;
	weightGrams: number;
}

export function subtotalOf(lines: PricedLine[]): number {
	return lines.reduce((n, l) => n + l.unitPrice.amount * l.quantity, 0);
}

/** Tax in basis points of the subtotal, rounded half up to the cent. */
export function taxOf(subtotal: number, rateBps: number): number {
	return Math.round((subtotal * rateBps) / 10_000);
}

/** A readable, unique-enough order number: MC-YYMMDD-XXXXXX (unique index decides). */
export function orderNumber(now: Date, random: () => number = Math.random): string {
	const d = now.toISOString().slice(2, 10).replace(/-/g, "");
	const alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
	let tail = "";
	for (let i = 0; i < 6; i++) tail += alphabet[Math.floor(random() * alphabet.length)];
	return `MC-${d}-${tail}`;
}

/** Which failureReason a failed checkout step stands for (shared/API.md). */
export function failureReason(step: string, error: { type?: string | null; code?: number | null }): string {
	const unavailable = ["REQUEST_TIMEOUT", "SERVICE_NOT_FOUND", "SERVICE_NOT_AVAILABLE", "QUEUE_FULL", "SERVICE_UNAVAILABLE"].includes(error.type ?? "");
	switch (step) {
		case "authorize":
			if (error.type === "PAYMENT_DECLINED" || error.type === "INSUFFICIENT_FUNDS") return error.type;
			return "PAYMENT_UNAVAILABLE";
		case "reserve":
			// OUT_OF_STOCK only when the warehouse refused (a 4xx: all lines or none, nothing held). A
			// warehouse that could not answer in time (timeout, no node, database down) says nothing about
			// stock: the order could not be fulfilled now, FULFILLMENT_FAILED (adversary finding: orders
			// of a product with 1,000 in stock were told OUT_OF_STOCK while the inventory node was paused).
			if (error.type === "OUT_OF_STOCK" || (!unavailable && typeof error.code === "number" && error.code >= 400 && error.code < 500)) return "OUT_OF_STOCK";
			return "FULFILLMENT_FAILED";
		case "fulfill":
			return "FULFILLMENT_FAILED";
		case "capture":
			// Declined only when the provider or payments said so (a decline type, or a 4xx); a database
			// out of connections or any other server-side failure is not the card (adversary finding).
			if (["CAPTURE_FAILED", "PAYMENT_DECLINED", "INSUFFICIENT_FUNDS"].includes(error.type ?? "")) return "PAYMENT_DECLINED";
			if (!unavailable && typeof error.code === "number" && error.code >= 400 && error.code < 500) return "PAYMENT_DECLINED";
			return "PAYMENT_UNAVAILABLE";
		default:
			return "FULFILLMENT_FAILED";
	}
}
