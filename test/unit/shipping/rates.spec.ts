import { RATE_TABLE, nearestOrigin, shippingRates, zoneOf } from "../../../lib/shipping/rates";
import { isTrackingNumber, newTrackingNumber } from "../../../lib/shipping/tracking";

const usd = (amount: number) => ({ amount, currency: "USD" });
const quote = (weightGrams: number, country: string, subtotal = 0, freeShippingThreshold = 5000, origin = "US") => shippingRates({ weightGrams, origin, country, subtotal, freeShippingThreshold });

describe("the shipping rate table", () => {
	it("places a US warehouse's destinations in zones: at home, Canada and Mexico, Europe, the rest of the world", () => {
		expect(["US", "us", "CA", "MX", "DE", "GB", "CH", "JP", "BR", "AU"].map(c => zoneOf("US", c))).toEqual(["domestic", "domestic", "regional", "regional", "intercontinental", "intercontinental", "intercontinental", "world", "world", "world"]);
	});

	it("measures zones from the origin: a German warehouse ships at home to Germany, regionally in Europe, across the Atlantic to America", () => {
		expect(["DE", "de", "FR", "GB", "CH", "US", "CA", "JP"].map(c => zoneOf("DE", c))).toEqual(["domestic", "domestic", "regional", "regional", "regional", "intercontinental", "intercontinental", "world"]);
		expect(zoneOf("JP", "JP")).toBe("domestic");
		expect(zoneOf("JP", "KR")).toBe("world");
		expect(zoneOf("CA", "MX")).toBe("regional");
	});

	it("quotes from the warehouse nearest the destination when several could ship", () => {
		expect(nearestOrigin(["US", "DE"], "FR")).toBe("DE");
		expect(nearestOrigin(["US", "DE"], "CA")).toBe("US");
		expect(nearestOrigin(["us", "DE"], "US")).toBe("US");
		expect(nearestOrigin(["FR", "DE"], "JP")).toBe("DE");
		expect(nearestOrigin(["FR", "DE"], "IT")).toBe("DE");
		expect(nearestOrigin([], "US")).toBeUndefined();
	});

	it("prices a parcel up to 1 kg at the base price and each started kilogram after it at the per-kg price", () => {
		expect(quote(0, "US")).toEqual([
			{ method: "standard", price: usd(499), estimatedDays: 5 },
			{ method: "express", price: usd(1299), estimatedDays: 2 },
		]);
		expect(quote(1000, "US")).toEqual(quote(1, "US"));
		expect(quote(1001, "US")).toEqual([
			{ method: "standard", price: usd(599), estimatedDays: 5 },
			{ method: "express", price: usd(1499), estimatedDays: 2 },
		]);
		expect(quote(4500, "US")).toEqual([
			{ method: "standard", price: usd(499 + 4 * 100), estimatedDays: 5 },
			{ method: "express", price: usd(1299 + 4 * 200), estimatedDays: 2 },
		]);
	});

	it("charges more, and takes longer, abroad", () => {
		expect(quote(2500, "DE")).toEqual([
			{ method: "standard", price: usd(1999 + 2 * 400), estimatedDays: 10 },
			{ method: "express", price: usd(3999 + 2 * 800), estimatedDays: 4 },
		]);
		expect(quote(500, "CA")).toEqual([
			{ method: "standard", price: usd(1499), estimatedDays: 8 },
			{ method: "express", price: usd(2999), estimatedDays: 3 },
		]);
		expect(quote(500, "JP")).toEqual([
			{ method: "standard", price: usd(2499), estimatedDays: 14 },
			{ method: "express", price: usd(4999), estimatedDays: 6 },
		]);
		for (const zone of Object.values(RATE_TABLE)) expect(zone.express.days).toBeLessThan(zone.standard.days);
	});

	it("makes standard shipping free within the US at or above the threshold, never express, never abroad", () => {
		expect(quote(3000, "US", 4999)[0].price).toEqual(usd(499 + 2 * 100));
		expect(quote(3000, "US", 5000)).toEqual([
			{ method: "standard", price: usd(0), estimatedDays: 5 },
			{ method: "express", price: usd(1299 + 2 * 200), estimatedDays: 2 },
		]);
		expect(quote(3000, "US", 100, 100)[0].price).toEqual(usd(0));
		expect(quote(3000, "FR", 1_000_000)[0].price).toEqual(usd(1999 + 2 * 400));
	});

	it("makes standard shipping free within the origin's own country, wherever that is", () => {
		expect(quote(3000, "DE", 5000, 5000, "DE")[0].price).toEqual(usd(0));
		expect(quote(3000, "FR", 5000, 5000, "DE")[0].price).toEqual(usd(1499 + 2 * 300));
		expect(quote(3000, "US", 5000, 5000, "DE")[0].price).toEqual(usd(1999 + 2 * 400));
	});
});

describe("tracking numbers", () => {
	it("are MC and 12 characters without look-alikes, different every time", () => {
		const numbers = Array.from({ length: 1000 }, () => newTrackingNumber());
		for (const n of numbers) expect(n).toMatch(/^MC[2-9A-HJ-NP-Z]{12}$/);
		expect(new Set(numbers).size).toBe(1000);
	});

	it("use every symbol of the alphabet evenly for every byte value", () => {
		expect(newTrackingNumber(n => Uint8Array.from({ length: n }, (_, i) => i))).toBe("MC23456789ABCD");
		expect(newTrackingNumber(n => Uint8Array.from({ length: n }, (_, i) => 255 - i))).toBe("MCZYXWVUTSRQPN");
		expect(newTrackingNumber(n => new Uint8Array(n).fill(32))).toBe("MC222222222222");
	});

	it("are recognised in either case, and nothing else is", () => {
		expect(isTrackingNumber("MC23456789ABCD")).toBe(true);
		expect(isTrackingNumber("mc23456789abcd")).toBe(true);
		expect(["MC23456789ABC", "MC23456789ABCDE", "XX23456789ABCD", "MC0345678912AB", "MCO345678912AB", ""].map(isTrackingNumber)).toEqual([false, false, false, false, false, false]);
	});
});
