/**
 * The shipping rate table: standard and express, priced by total weight and destination zone,
 * with free standard shipping within the US at or above a subtotal threshold. Prices in cents.
 */
export type ShippingMethod = "standard" | "express";
export type Zone = "domestic" | "north-america" | "europe" | "world";

export interface Rate {
	method: ShippingMethod;
	price: { amount: number; currency: "USD" };
	estimatedDays: number;
}

interface Tariff {
	/** Price of a parcel up to the first kilogram. */
	base: number;
	/** Price of each further kilogram or part of one. */
	perKg: number;
	days: number;
}

export const RATE_TABLE: Record<Zone, Record<ShippingMethod, Tariff>> = {
	domestic: { standard: { base: 499, perKg: 100, days: 5 }, express: { base: 1299, perKg: 200, days: 2 } },
	"north-america": { standard: { base: 1499, perKg: 300, days: 8 }, express: { base: 2999, perKg: 600, days: 3 } },
	europe: { standard: { base: 1999, perKg: 400, days: 10 }, express: { base: 3999, perKg: 800, days: 4 } },
	world: { standard: { base: 2499, perKg: 500, days: 14 }, express: { base: 4999, perKg: 1000, days: 6 } },
};

const NORTH_AMERICA = new Set(["CA", "MX"]);
// EU, EEA, the UK and Switzerland.
const EUROPE = new Set([
	"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT", "NL",
	"PL", "PT", "RO", "SK", "SI", "ES", "SE", "GB", "NO", "IS", "LI", "CH",
]);

/** The zone of an ISO 3166 alpha-2 country code. */
export function zoneOf(country: string): Zone {
	const c = country.toUpperCase();
	if (c === "US") return "domestic";
	if (NORTH_AMERICA.has(c)) return "north-america";
	if (EUROPE.has(c)) return "europe";
	return "world";
}

export interface RateRequest {
	/** Total weight of the parcel(s) in grams. */
	weightGrams: number;
	country: string;
	/** Order subtotal in cents, for the free-shipping threshold. */
	subtotal: number;
	freeShippingThreshold: number;
}

/** The methods on offer for a parcel, cheapest first. */
export function shippingRates(req: RateRequest): Rate[] {
	const zone = zoneOf(req.country);
	// The first kilogram is in the base price; each started kilogram after it costs extra.
	const extraKg = Math.max(0, Math.ceil(req.weightGrams / 1000) - 1);
	const priceOf = (m: ShippingMethod) => RATE_TABLE[zone][m].base + RATE_TABLE[zone][m].perKg * extraKg;
	const freeStandard = zone === "domestic" && req.subtotal >= req.freeShippingThreshold;
	return (["standard", "express"] as const).map(method => ({
		method,
		price: { amount: method === "standard" && freeStandard ? 0 : priceOf(method), currency: "USD" as const },
		estimatedDays: RATE_TABLE[zone][method].days,
	}));
}
