/**
 * A product across the catalog's boundaries: admin input rules (as the broker's strict validator
 * applies them), the row a product becomes, the columns a PATCH changes, the public view and the
 * event snapshot — all whitelisted.
 */
import {
	MAX_ATTRIBUTES,
	type ProductRecord,
	checkAttributes,
	createParams,
	newProductRecord,
	productChanges,
	productSnapshot,
	productView,
	updateParams,
} from "../../../lib/catalog/product";
import { StrictValidator } from "../../../lib/validator";

const validator = new (StrictValidator as any)();
const checkCreate: (p: unknown) => true | { field: string; type: string }[] = validator.compile(createParams);
const checkUpdate: (p: unknown) => true | { field: string; type: string }[] = validator.compile(updateParams);

const valid = () => ({
	sku: "ZX-100",
	name: "Aurora Wireless Headphones",
	brand: "Aurora",
	categoryId: "cat-1",
	price: { amount: 12999, currency: "USD" },
	weightGrams: 250,
});

function failures(check: (p: unknown) => unknown, params: unknown): string[] {
	const r = check(params);
	return r === true ? [] : [...new Set((r as { field: string }[]).map(e => e.field))];
}

describe("create parameters", () => {
	it("accept a minimal and a complete product", () => {
		expect(checkCreate(valid())).toBe(true);
		const full = { ...valid(), description: "x".repeat(5000), attributes: { color: "black", wireless: true, drivers: 2 }, images: ["https://img.example.com/a.jpg"], status: "draft" };
		expect(checkCreate(full)).toBe(true);
	});

	it("take SKUs of 1-64 letters, digits, '.', '_', '/' and '-' (API.md), in any case", () => {
		for (const sku of ["", "ZX 100", "zx*100", "zx\u00e9", "a\u0000b", `Z${"X".repeat(64)}`, 12345]) expect(failures(checkCreate, { ...valid(), sku })).toEqual(["sku"]);
		for (const sku of ["Z", "zx-100", "-ZX100", "shoes/men/42.5", "tee_red.xl", "A-B-C", `Z${"x".repeat(63)}`]) expect(checkCreate({ ...valid(), sku })).toBe(true);
	});

	it("default the weight to 500 g when it is not given (API.md)", () => {
		const { weightGrams: _omitted, ...withoutWeight } = valid();
		expect(checkCreate(withoutWeight)).toBe(true);
		expect(newProductRecord({ ...withoutWeight, description: "" }, "p-1", new Date(0)).weight_grams).toBe(500);
	});

	it("refuse wrong types, out-of-range numbers and bad currencies", () => {
		const cases: [string, Record<string, unknown>][] = [
			["price.amount", { price: { amount: -1, currency: "USD" } }],
			["price.amount", { price: { amount: 100_000_001, currency: "USD" } }],
			["price.amount", { price: { amount: 12.5, currency: "USD" } }],
			["price.amount", { price: { amount: "1299", currency: "USD" } }],
			["price.currency", { price: { amount: 1299, currency: "EUR" } }],
			["weightGrams", { weightGrams: 0 }],
			["weightGrams", { weightGrams: 100_001 }],
			["weightGrams", { weightGrams: "250" }],
			["name", { name: "" }],
			["name", { name: "   " }],
			["name", { name: "n".repeat(201) }],
			["brand", { brand: "b".repeat(81) }],
			["description", { description: "d".repeat(5001) }],
			["categoryId", { categoryId: "" }],
			["status", { status: "archived" }],
			["images", { images: Array.from({ length: 21 }, (_, i) => `https://img.example.com/${i}.jpg`) }],
			["images[0]", { images: ["not a url"] }],
			["attributes.size", { attributes: { size: { w: 1 } } }],
			["attributes.tags", { attributes: { tags: ["a"] } }],
		];
		for (const [field, change] of cases) expect([field, failures(checkCreate, { ...valid(), ...change })]).toEqual([field, [field]]);
	});

	it("refuse fields that are not part of a product, at the top and inside the price", () => {
		expect(checkCreate({ ...valid(), id: "mine" })).toEqual([expect.objectContaining({ type: "objectStrict" })]);
		expect(checkCreate({ ...valid(), ratingAverage: 5 })).toEqual([expect.objectContaining({ type: "objectStrict" })]);
		expect(checkCreate({ ...valid(), price: { amount: 1, currency: "USD", tax: 0 } })).toEqual([expect.objectContaining({ type: "objectStrict" })]);
	});

	it("trims names and brands", () => {
		const p = { ...valid(), name: "  Koda Desk Lamp  ", brand: " Koda " };
		expect(checkCreate(p)).toBe(true);
		expect([p.name, p.brand]).toEqual(["Koda Desk Lamp", "Koda"]);
	});
});

describe("update parameters", () => {
	it("make every field optional but never accept a SKU", () => {
		expect(checkUpdate({ id: "p1" })).toBe(true);
		expect(checkUpdate({ id: "p1", price: { amount: 0, currency: "USD" }, status: "active" })).toBe(true);
		expect(checkUpdate({ id: "p1", sku: "NEW-SKU" })).toEqual([expect.objectContaining({ type: "objectStrict" })]);
		expect(failures(checkUpdate, { id: "p1", weightGrams: -5 })).toEqual(["weightGrams"]);
		expect(failures(checkUpdate, { id: "p1", status: "archived" })).toEqual(["status"]);
	});
});

describe("checkAttributes", () => {
	it(`allows up to ${MAX_ATTRIBUTES} attributes and refuses more with a 422`, () => {
		const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]));
		expect(() => checkAttributes(undefined)).not.toThrow();
		expect(() => checkAttributes(many(MAX_ATTRIBUTES))).not.toThrow();
		expect(() => checkAttributes(many(MAX_ATTRIBUTES + 1))).toThrow(
			expect.objectContaining({ code: 422, type: "VALIDATION_ERROR", data: [{ field: "attributes", message: `at most ${MAX_ATTRIBUTES} attributes` }] }),
		);
	});
});

const now = new Date("2026-03-01T10:00:00.000Z");

describe("newProductRecord", () => {
	it("fills defaults: empty description, attributes and images, active, no rating", () => {
		expect(newProductRecord({ ...valid() }, "id-1", now)).toEqual({
			id: "id-1",
			sku: "ZX-100",
			name: "Aurora Wireless Headphones",
			description: "",
			brand: "Aurora",
			category_id: "cat-1",
			price_amount: 12999,
			currency: "USD",
			attributes: {},
			images: [],
			weight_grams: 250,
			status: "active",
			rating_average: null,
			rating_count: 0,
			created_at: now,
			updated_at: now,
		});
	});
});

describe("productChanges", () => {
	it("changes only the fields a PATCH names, and the update time", () => {
		expect(productChanges({}, now)).toEqual({ updated_at: now });
		expect(productChanges({ name: "New", price: { amount: 5, currency: "USD" }, weightGrams: 9, categoryId: "c2", status: "draft" }, now)).toEqual({
			updated_at: now,
			name: "New",
			price_amount: 5,
			currency: "USD",
			weight_grams: 9,
			category_id: "c2",
			status: "draft",
		});
		expect(productChanges({ description: "", attributes: {}, images: [] }, now)).toEqual({ updated_at: now, description: "", attributes: {}, images: [] });
	});
});

describe("views", () => {
	const row = {
		...newProductRecord({ ...valid(), attributes: { color: "navy" }, images: ["https://img.example.com/a.jpg"] }, "id-1", now),
		rating_average: 4.5,
		rating_count: 2,
		internal_note: "not for clients",
	} as ProductRecord & { internal_note: string };

	it("shows clients a whitelisted product with money as { amount, currency }", () => {
		expect(productView(row)).toEqual({
			id: "id-1",
			sku: "ZX-100",
			name: "Aurora Wireless Headphones",
			description: "",
			price: { amount: 12999, currency: "USD" },
			categoryId: "cat-1",
			brand: "Aurora",
			attributes: { color: "navy" },
			images: ["https://img.example.com/a.jpg"],
			weightGrams: 250,
			status: "active",
			createdAt: "2026-03-01T10:00:00.000Z",
			updatedAt: "2026-03-01T10:00:00.000Z",
		});
	});

	it("snapshots a product for events with its category and rating", () => {
		expect(productSnapshot(row, { slug: "headphones", name: "Headphones" })).toEqual({
			productId: "id-1",
			sku: "ZX-100",
			name: "Aurora Wireless Headphones",
			description: "",
			brand: "Aurora",
			categoryId: "cat-1",
			categorySlug: "headphones",
			categoryName: "Headphones",
			price: { amount: 12999, currency: "USD" },
			status: "active",
			attributes: { color: "navy" },
			createdAt: "2026-03-01T10:00:00.000Z",
			updatedAt: "2026-03-01T10:00:00.000Z",
			weightGrams: 250,
			rating: { average: 4.5, count: 2 },
		});
		expect(productSnapshot({ ...row, rating_count: 0, rating_average: null }, undefined)).toMatchObject({ categorySlug: "", categoryName: "", rating: null });
	});
});
