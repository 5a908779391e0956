/**
 * The catalogue CSV format: header checks, cells into typed product fields and stock, money by
 * its digits, and the rows export writes (which parse back to the same product).
 */
import { exportHeader, formatPrice, formatRow, parseHeader, parsePrice, parseRow } from "../../../lib/catalog-io/format";

const header = (cols: string[]) => {
	const h = parseHeader(cols);
	if (!h.ok) throw new Error(h.problems.join("; "));
	return h.header;
};
const FULL = ["sku", "name", "description", "brand", "category", "price", "currency", "weightGrams", "status", "attributes", "images", "stock:wh-east", "stock:wh-west"];

describe("the header", () => {
	it("needs sku, name, brand, category and price, in any order, and takes the other product columns and stock:<warehouse>", () => {
		expect(parseHeader(["price", "category", "brand", "name", "sku"]).ok).toBe(true);
		const h = header(FULL);
		expect([...h.stock.keys()]).toEqual(["wh-east", "wh-west"]);
		expect(h.width).toBe(FULL.length);
	});

	it("names every problem at once: unknown, repeated and missing columns, a stock column without a warehouse", () => {
		expect(parseHeader(["sku", "name", "prise", "name", "stock:", "brand"])).toEqual({
			ok: false,
			problems: [
				'unknown column "prise" (columns: sku, name, description, brand, category, price, currency, weightGrams, status, attributes, images, stock:<warehouseId>)',
				'column "name" appears twice',
				'column "stock:" names no warehouse (stock:<warehouseId>)',
				'required column "category" is missing',
				'required column "price" is missing',
			],
		});
	});
});

describe("prices", () => {
	it("read major units with up to two decimals into cents, by the digits", () => {
		expect(["19.99", "20", "0.5", "0.05", " 7.10 ", "1000000.00", "0"].map(parsePrice)).toEqual([1999, 2000, 50, 5, 710, 100000000, 0]);
		// 0.1 + 0.2 style float errors cannot happen: 1.15 is 115, not 114.99999.
		expect(parsePrice("1.15")).toBe(115);
	});

	it("refuse anything else: more decimals, signs, commas, exponents, currency symbols, blanks", () => {
		for (const bad of ["12.345", "-1", "+1", "1,99", "1e3", "$5", "", " ", "abc", "1.", ".5", "1 000"]) expect([bad, parsePrice(bad)]).toEqual([bad, undefined]);
	});

	it("write cents back as major units", () => {
		expect([1999, 2000, 5, 0, 100000000].map(formatPrice)).toEqual(["19.99", "20.00", "0.05", "0.00", "1000000.00"]);
	});
});

describe("a data row", () => {
	const h = header(FULL);
	const cells = (o: Partial<Record<string, string>>) => FULL.map(c => o[c] ?? "");
	const good = { sku: "KT-1", name: " Kettle ", brand: "Zephyr", category: "kitchen", price: "45.99" };

	it("gives the product fields the file has, trimmed where they are one line, and its stock per warehouse", () => {
		expect(parseRow(h, cells({ ...good, description: "  Hot.\nFast. ", weightGrams: "900", status: "draft", attributes: '{"color":"red","cups":8}', images: "https://a.example/1.jpg | https://a.example/2.jpg", "stock:wh-east": "12", "stock:wh-west": "0" }))).toEqual({
			ok: true,
			product: {
				sku: "KT-1",
				name: "Kettle",
				brand: "Zephyr",
				description: "  Hot.\nFast. ",
				category: "kitchen",
				price: { amount: 4599, currency: "USD" },
				weightGrams: 900,
				status: "draft",
				attributes: { color: "red", cups: 8 },
				images: ["https://a.example/1.jpg", "https://a.example/2.jpg"],
			},
			stock: [
				{ warehouseId: "wh-east", onHand: 12 },
				{ warehouseId: "wh-west", onHand: 0 },
			],
		});
	});

	it("leaves out what an empty cell leaves to the catalog: weight, status, currency default; stock left alone", () => {
		const r = parseRow(h, cells(good));
		expect(r).toEqual({ ok: true, product: { sku: "KT-1", name: "Kettle", brand: "Zephyr", description: "", category: "kitchen", price: { amount: 4599, currency: "USD" }, attributes: {}, images: [] }, stock: [] });
	});

	it("passes a column the file does not have as absent, so an update keeps that field", () => {
		const narrow = header(["sku", "name", "brand", "category", "price"]);
		expect(parseRow(narrow, ["KT-1", "Kettle", "Zephyr", "kitchen", "45.99"])).toEqual({ ok: true, product: { sku: "KT-1", name: "Kettle", brand: "Zephyr", category: "kitchen", price: { amount: 4599, currency: "USD" } }, stock: [] });
	});

	it("is refused with a reason for cells that cannot be read", () => {
		const reason = (o: Record<string, string>) => {
			const r = parseRow(h, cells({ ...good, ...o }));
			return r.ok ? "ok" : r.reason;
		};
		expect(reason({ sku: " " })).toBe("sku is empty");
		expect(reason({ category: "" })).toBe("category is empty");
		expect(reason({ price: "4,99" })).toBe('price "4,99" is not an amount like 19.99');
		expect(reason({ weightGrams: "1.5" })).toBe('weightGrams "1.5" is not a whole number of grams');
		expect(reason({ attributes: "color=red" })).toBe('attributes is not a JSON object like {"color":"black"}');
		expect(reason({ attributes: "[1,2]" })).toBe('attributes is not a JSON object like {"color":"black"}');
		expect(reason({ "stock:wh-east": "-3" })).toBe('stock:wh-east "-3" is not a whole number ≥ 0');
		expect(parseRow(h, ["KT-1", "Kettle"])).toEqual({ ok: false, sku: "KT-1", reason: `expected ${FULL.length} columns, found 2` });
	});
});

describe("export", () => {
	it("writes every product column and a stock column per warehouse, which import reads back to the same product", () => {
		const product = { sku: "KT-1", name: "Kettle", description: "Hot,\n\"fast\"", brand: "Zephyr", categorySlug: "kitchen", price: { amount: 4599, currency: "USD" }, weightGrams: 900, status: "active", attributes: { color: "red" }, images: ["https://a.example/1.jpg", "https://a.example/2.jpg"] };
		const cols = exportHeader(["wh-east", "wh-west"]);
		expect(cols).toEqual(FULL);
		const cells = formatRow(product, { "wh-east": 3 }, ["wh-east", "wh-west"]);
		expect(cells).toEqual(["KT-1", "Kettle", 'Hot,\n"fast"', "Zephyr", "kitchen", "45.99", "USD", "900", "active", '{"color":"red"}', "https://a.example/1.jpg|https://a.example/2.jpg", "3", ""]);
		expect(parseRow(header(cols), cells)).toEqual({
			ok: true,
			product: { sku: "KT-1", name: "Kettle", description: 'Hot,\n"fast"', brand: "Zephyr", category: "kitchen", price: { amount: 4599, currency: "USD" }, weightGrams: 900, status: "active", attributes: { color: "red" }, images: product.images },
			stock: [{ warehouseId: "wh-east", onHand: 3 }],
		});
	});
});
