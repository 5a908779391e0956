/**
 * Listing rules of GET /products, without a broker: paging clamps, sort keys, price ranges and
 * the category tree.
 */
import { PRODUCT_SORTS, checkPriceRange, clampPaging, sortOrder, withDescendants } from "../../../lib/catalog/query";

describe("clampPaging", () => {
	it("defaults to the first page of 20", () => {
		expect(clampPaging()).toEqual({ page: 1, pageSize: 20, offset: 0 });
	});

	it("clamps pageSize to 1..100 and page to at least 1, never refusing an integer", () => {
		expect(clampPaging(0, 0)).toEqual({ page: 1, pageSize: 1, offset: 0 });
		expect(clampPaging(-7, -50)).toEqual({ page: 1, pageSize: 1, offset: 0 });
		expect(clampPaging(1, 101)).toEqual({ page: 1, pageSize: 100, offset: 0 });
		expect(clampPaging(2, 1e12)).toEqual({ page: 2, pageSize: 100, offset: 100 });
		expect(clampPaging(1e15, 10).page).toBe(1_000_000);
	});

	it("turns page and pageSize into an offset", () => {
		expect(clampPaging(3, 25)).toEqual({ page: 3, pageSize: 25, offset: 50 });
		expect(clampPaging(1, 100)).toEqual({ page: 1, pageSize: 100, offset: 0 });
	});
});

describe("sortOrder", () => {
	it("maps every public sort key to a column and direction, ties broken by id", () => {
		expect(Object.fromEntries(PRODUCT_SORTS.map(s => [s, sortOrder(s)]))).toEqual({
			price: [["price_amount", "ASC"], ["id", "ASC"]],
			"-price": [["price_amount", "DESC"], ["id", "ASC"]],
			name: [["name", "ASC"], ["id", "ASC"]],
			"-name": [["name", "DESC"], ["id", "ASC"]],
			createdAt: [["created_at", "ASC"], ["id", "ASC"]],
			"-createdAt": [["created_at", "DESC"], ["id", "ASC"]],
		});
	});

	it("sorts by name when no sort is given", () => {
		expect(sortOrder()).toEqual([["name", "ASC"], ["id", "ASC"]]);
	});

	it("offers the sorts API.md names", () => {
		expect(PRODUCT_SORTS).toEqual(expect.arrayContaining(["price", "-price", "name", "-createdAt"]));
	});
});

describe("checkPriceRange", () => {
	it("refuses a minimum above the maximum as a 422 naming minPrice", () => {
		expect(() => checkPriceRange(500, 100)).toThrow(
			expect.objectContaining({ code: 422, type: "VALIDATION_ERROR", data: [{ field: "minPrice", message: "must not exceed maxPrice" }] }),
		);
	});

	it("accepts equal bounds, one bound or none", () => {
		for (const [min, max] of [[100, 100], [0, 5], [100, undefined], [undefined, 0], [undefined, undefined]]) {
			expect(() => checkPriceRange(min, max)).not.toThrow();
		}
	});
});

describe("withDescendants", () => {
	const tree = [
		{ id: "audio", parentId: null },
		{ id: "headphones", parentId: "audio" },
		{ id: "earbuds", parentId: "headphones" },
		{ id: "speakers", parentId: "audio" },
		{ id: "books", parentId: null },
	];

	it("includes children and grandchildren, not siblings", () => {
		expect(withDescendants("audio", tree)).toEqual(["audio", "headphones", "speakers", "earbuds"]);
		expect(withDescendants("headphones", tree)).toEqual(["headphones", "earbuds"]);
		expect(withDescendants("books", tree)).toEqual(["books"]);
	});

	it("terminates on a cycle and lists each category once", () => {
		const cyclic = [
			{ id: "a", parentId: "b" },
			{ id: "b", parentId: "a" },
		];
		expect(withDescendants("a", cyclic)).toEqual(["a", "b"]);
	});
});
