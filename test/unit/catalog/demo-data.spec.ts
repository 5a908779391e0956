/**
 * The demo catalog: the same on every install (seeded generator, ids derived from SKUs), large
 * and varied enough to demo search and filters, and valid by the rules admins are held to.
 */
import { createHash } from "node:crypto";
import { DEMO_CATEGORIES, DEMO_PRODUCTS, stableId } from "../../../lib/catalog/demo-data";
import { MAX_ATTRIBUTES, createParams } from "../../../lib/catalog/product";
import { StrictValidator } from "../../../lib/validator";

const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$/;

describe("demo data determinism", () => {
	it("builds the same catalog on every load, without Math.random", () => {
		let fresh: typeof import("../../../lib/catalog/demo-data") | undefined;
		const random = jest.spyOn(Math, "random").mockImplementation(() => {
			throw new Error("Math.random used");
		});
		try {
			jest.isolateModules(() => {
				fresh = require("../../../lib/catalog/demo-data");
			});
		} finally {
			random.mockRestore();
		}
		expect(fresh!.DEMO_PRODUCTS).not.toBe(DEMO_PRODUCTS);
		expect(fresh!.DEMO_PRODUCTS).toEqual(DEMO_PRODUCTS);
		expect(fresh!.DEMO_CATEGORIES).toEqual(DEMO_CATEGORIES);
	});

	it("derives UUID-shaped ids from the SKU with sha1", () => {
		const sha1 = createHash("sha1").update("product:HP-1001").digest("hex");
		expect(DEMO_PRODUCTS[0].sku).toBe("HP-1001");
		expect(DEMO_PRODUCTS[0].id.replace(/-/g, "").slice(0, 12)).toBe(sha1.slice(0, 12));
		expect(DEMO_PRODUCTS[0].id).toBe("81fcadf7-5f28-5ab6-ac68-875def94134b");
		for (const p of DEMO_PRODUCTS) expect([p.sku, p.id]).toEqual([p.sku, stableId("product", p.sku)]);
		for (const c of DEMO_CATEGORIES) expect(c.id).toBe(stableId("category", c.slug));
		expect([...DEMO_PRODUCTS, ...DEMO_CATEGORIES].every(x => UUID_SHAPE.test(x.id))).toBe(true);
	});
});

describe("demo data shape", () => {
	it("has at least 8 categories, some with sub-categories, all parents known", () => {
		expect(DEMO_CATEGORIES.length).toBeGreaterThanOrEqual(8);
		const slugs = new Set(DEMO_CATEGORIES.map(c => c.slug));
		expect(slugs.size).toBe(DEMO_CATEGORIES.length);
		const parents = new Set(DEMO_CATEGORIES.filter(c => c.parentSlug).map(c => c.parentSlug));
		expect(parents.size).toBeGreaterThanOrEqual(2);
		for (const p of parents) expect(slugs.has(p!)).toBe(true);
	});

	it("has at least 120 products of at least 8 brands, with unique ids, SKUs and names", () => {
		expect(DEMO_PRODUCTS.length).toBeGreaterThanOrEqual(120);
		expect(new Set(DEMO_PRODUCTS.map(p => p.brand)).size).toBeGreaterThanOrEqual(8);
		for (const key of ["id", "sku", "name"] as const) expect(new Set(DEMO_PRODUCTS.map(p => p[key])).size).toBe(DEMO_PRODUCTS.length);
	});

	it("has several headphones, realistically named after their brand", () => {
		const headphones = DEMO_PRODUCTS.filter(p => p.name.includes("Headphones"));
		expect(headphones.length).toBeGreaterThanOrEqual(5);
		for (const p of DEMO_PRODUCTS) expect(p.name.startsWith(`${p.brand} `)).toBe(true);
	});

	it("puts every product in a known category, the sub-categories included", () => {
		const slugs = new Set(DEMO_CATEGORIES.map(c => c.slug));
		for (const p of DEMO_PRODUCTS) expect(slugs.has(p.categorySlug)).toBe(true);
		const subs = DEMO_CATEGORIES.filter(c => c.parentSlug).map(c => c.slug);
		expect(subs.filter(s => DEMO_PRODUCTS.some(p => p.categorySlug === s)).length).toBeGreaterThanOrEqual(2);
	});

	it("passes the same validation as a product an admin creates", () => {
		const check = new (StrictValidator as any)().compile(createParams);
		for (const p of DEMO_PRODUCTS) {
			const { id, categorySlug, ...fields } = p;
			expect([p.sku, check({ ...fields, categoryId: stableId("category", categorySlug) })]).toEqual([p.sku, true]);
			expect(Object.keys(p.attributes).length).toBeLessThanOrEqual(MAX_ATTRIBUTES);
			expect(id).toBeTruthy();
		}
	});

	it("prices in whole cents and weighs in whole grams", () => {
		for (const p of DEMO_PRODUCTS) {
			expect(Number.isInteger(p.price.amount) && p.price.amount > 0 && p.price.currency === "USD").toBe(true);
			expect(Number.isInteger(p.weightGrams) && p.weightGrams >= 1).toBe(true);
		}
		expect(new Set(DEMO_PRODUCTS.map(p => p.price.amount)).size).toBeGreaterThan(60);
	});
});
