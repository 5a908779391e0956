/**
 * The shipping rate table: standard and express, priced by total weight and by the zone between
 * the parcel's origin (the shipping warehouse's country) and its destination, with free standard
 * shipping within the origin's country at or above a subtotal threshold. Prices in cents.
 */
export type ShippingMethod = "standard" | "express";
/** Same country; same region (North America, or Europe); across the Atlantic between the two; anywhere else. */
export type Zone = "domestic" | "regional" | "intercontinental" | "world";

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
	regional: { standard: { base: 1499, perKg: 300, days: 8 }, express: { base: 2999, perKg: 600, days: 3 } },
	intercontinental: { standard: { base: 1999, perKg: 400, days: 10 }, express: { base: 3999, perKg: 800, days: 4 } },
	world: { standard: { base: 2499, perKg: 500, days: 14 }, express: { base: 4999, perKg: 1000, days: 6 } },
};

const NORTH_AMERICA = new Set(["US", "CA", "MX"]);
// EU, EEA, the UK and Switzerland.
const EUROPE = new Set([
	"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT", "NL",
	"PL", "PT", "RO", "SK", "SI", "ES", "SE", "GB", "NO", "IS", "LI", "CH",
]);

function regionOf(country: string): "north-america" | "europe" | undefined {
	if (NORTH_AMERICA.has(country)) return "north-america";
	if (EUROPE.has(country)) return "europe";
	return undefined;
}

/** The zone of a parcel from `origin` to `destination` (ISO 3166 alpha-2 codes, any case). */
export function zoneOf(origin: string, destination: string): Zone {
	const from = origin.toUpperCase();
	const to = destination.toUpperCase();
	if (from === to) return "domestic";
	const a = regionOf(from);
	const b = regionOf(to);
	if (a && a === b) return "regional";
	if (a && b) return "intercontinental";
	return "world";
}

const ZONE_ORDER: Zone[] = ["domestic", "regional", "intercontinental", "world"];

/**
 * The origin a quote assumes when several warehouses could ship: the one nearest the destination
 * (by zone; alphabetical among equals), so a shop quotes what its nearest stock costs to send.
 * undefined when there is none.
 */
export function nearestOrigin(origins: string[], destination: string): string | undefined {
	let best: string | undefined;
	for (const o of [...new Set(origins.map(c => c.toUpperCase()))].sort()) {
		if (best === undefined || ZONE_ORDER.indexOf(zoneOf(o, destination)) < ZONE_ORDER.indexOf(zoneOf(best, destination))) best = o;
	}
	return best;
}

/** The origin of quotes while no active warehouse has an address yet: the tariff's home. */
export const DEFAULT_ORIGIN = "US";

/** The origin a quote to `destination` uses, given the active warehouses' countries (nearest, else the default). */
export function originFor(origins: readonly string[], destination: string): string {
	return nearestOrigin([...origins], destination) ?? DEFAULT_ORIGIN;
}

export interface RateRequest {
	/** Total weight of the parcel(s) in grams. */
	weightGrams: number;
	/** Where the parcel leaves from: the shipping warehouse's country (ISO 3166 alpha-2). */
	origin: string;
	/** Where it goes (ISO 3166 alpha-2). */
	country: string;
	/** Order subtotal in cents, for the free-shipping threshold. */
	subtotal: number;
	freeShippingThreshold: number;
}

/** The methods on offer for a parcel, cheapest first. */
export function shippingRates(req: RateRequest): Rate[] {
	const zone = zoneOf(req.origin, req.country);
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
