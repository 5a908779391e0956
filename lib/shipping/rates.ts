/**
 * Shipping rates: standard and express, priced by weight and destination, with free standard
 * shipping within the US at or above a subtotal threshold. Prices in cents.
 */
export interface Rate {
	method: "standard" | "express";
	price: { amount: number; currency: "USD" };
	estimatedDays: number;
}

const TABLE = {
	domestic: { standard: { base: 499, perKg: 100, days: 5 }, express: { base: 1299, perKg: 200, days: 2 } },
	international: { standard: { base: 1999, perKg: 400, days: 12 }, express: { base: 3999, perKg: 800, days: 5 } },
};

export function shippingRates(totalWeightGrams: number, country: string, subtotal: number, freeThreshold: number): Rate[] {
	const zone = country === "US" ? "domestic" : "international";
	// The first kilogram is in the base price; each started kilogram after it costs extra.
	const extraKg = Math.max(0, Math.ceil(totalWeightGrams / 1000) - 1);
	const price = (m: "standard" | "express") => TABLE[zone][m].base + TABLE[zone][m].perKg * extraKg;
	const standard = zone === "domestic" && subtotal >= freeThreshold ? 0 : price("standard");
	return [
		{ method: "standard", price: { amount: standard, currency: "USD" }, estimatedDays: TABLE[zone].standard.days },
		{ method: "express", price: { amount: price("express"), currency: "USD" }, estimatedDays: TABLE[zone].express.days },
	];
}
