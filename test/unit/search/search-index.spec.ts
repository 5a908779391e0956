import { ProductSearchIndex, type SearchDoc } from "../../../lib/search/search-index";

function doc(id: string, name: string, over: Partial<SearchDoc> = {}): SearchDoc {
	return {
		id,
		sku: `SKU-${id}`,
		name,
		description: "",
		brand: "Acme",
		categoryId: "c-audio",
		categorySlug: "audio",
		categoryName: "Audio",
		priceAmount: 1000,
		currency: "USD",
		createdAt: "2026-01-01T00:00:00.000Z",
		inStock: true,
		ratingAverage: null,
		ratingCount: 0,
		...over,
	};
}

function fixture(): ProductSearchIndex {
	const idx = new ProductSearchIndex();
	idx.upsert(doc("1", "Aurora Wireless Headphones", { brand: "Aurora", priceAmount: 9900 }));
	idx.upsert(doc("2", "Nimbus Studio Headphones", { brand: "Nimbus", priceAmount: 19900, inStock: false }));
	idx.upsert(doc("3", "Aurora Desk Lamp", { brand: "Aurora", categoryId: "c-home", categorySlug: "home", categoryName: "Home", priceAmount: 2900 }));
	idx.upsert(doc("4", "Head Torch", { brand: "Lumen", categoryId: "c-outdoor", categorySlug: "outdoor", categoryName: "Outdoor", priceAmount: 1500 }));
	return idx;
}

const page = { page: 1, pageSize: 20 };

describe("ProductSearchIndex", () => {
	it("finds headphones despite a one-letter typo", () => {
		const r = fixture().search({ q: "hedphones", ...page });
		expect(r.items.map(d => d.id).sort()).toEqual(["1", "2"]);
	});

	it("counts a swapped pair of letters as one edit (keybaord finds keyboard), in any word of the query", () => {
		const idx = fixture();
		idx.upsert(doc("5", "Mechanical Keyboard", { brand: "Clack" }));
		idx.upsert(doc("6", "Keyboard Stand", { brand: "Clack" }));
		expect(idx.search({ q: "keybaord", ...page }).items.map(d => d.id).sort()).toEqual(["5", "6"]);
		expect(idx.search({ q: "mehcanical keyboard", ...page }).items.map(d => d.id)).toEqual(["5"]);
		expect(idx.search({ q: "keybaord stand", ...page }).items.map(d => d.id)).toEqual(["6"]);
		// Two swaps in one word are two edits: not found.
		expect(idx.search({ q: "kyebaord", ...page }).total).toBe(0);
	});

	it("completes a prefix of the last word", () => {
		const r = fixture().search({ q: "aurora head", ...page });
		expect(r.items.map(d => d.id)).toEqual(["1"]);
	});

	it("suggests product names by prefix, at most the limit", () => {
		const idx = fixture();
		expect(idx.suggest("hea").map(s => s.id).sort()).toEqual(["1", "2", "4"]);
		expect(idx.suggest("hea", 2)).toHaveLength(2);
		expect(idx.suggest("   ")).toEqual([]);
	});

	it("filters by category slug or id, brand and price range", () => {
		const idx = fixture();
		expect(idx.search({ category: "audio", ...page }).total).toBe(2);
		expect(idx.search({ category: "c-home", ...page }).items.map(d => d.id)).toEqual(["3"]);
		expect(idx.search({ brand: "aurora", ...page }).total).toBe(2);
		expect(idx.search({ minPrice: 2000, maxPrice: 10000, ...page }).items.map(d => d.id).sort()).toEqual(["1", "3"]);
	});

	it("filters by the set of category ids a category covers, when the caller knows the tree", () => {
		const idx = fixture();
		// "c-home" and "c-outdoor" under one parent: the parent's filter covers both, its facet still counts each leaf.
		const r = idx.search({ category: "living", categoryIds: new Set(["c-living", "c-home", "c-outdoor"]), ...page });
		expect(r.items.map(d => d.id).sort()).toEqual(["3", "4"]);
		expect(r.facets.category).toEqual([
			{ value: "audio", count: 2 },
			{ value: "home", count: 1 },
			{ value: "outdoor", count: 1 },
		]);
		expect(idx.search({ category: "c-home", categoryIds: new Set(["c-home"]), ...page }).items.map(d => d.id)).toEqual(["3"]);
		expect(idx.inCategory("c-audio").map(d => d.id).sort()).toEqual(["1", "2"]);
	});

	it("counts facets with every filter but their own", () => {
		const r = fixture().search({ brand: "Aurora", ...page });
		expect(r.facets.brand).toEqual([
			{ value: "Aurora", count: 2 },
			{ value: "Lumen", count: 1 },
			{ value: "Nimbus", count: 1 },
		]);
		expect(r.facets.category).toEqual([
			{ value: "audio", count: 1 },
			{ value: "home", count: 1 },
		]);
		expect(r.facets.price).toEqual([
			{ value: "25-50", count: 1 },
			{ value: "50-100", count: 1 },
		]);
	});

	it("sorts and paginates", () => {
		const idx = fixture();
		expect(idx.search({ sort: "price", ...page }).items.map(d => d.id)).toEqual(["4", "3", "1", "2"]);
		expect(idx.search({ sort: "-price", page: 2, pageSize: 3 }).items.map(d => d.id)).toEqual(["4"]);
	});

	it("drops removed products and re-indexes updated text", () => {
		const idx = fixture();
		idx.remove("1");
		idx.upsert(doc("3", "Aurora Floor Lamp", { brand: "Aurora" }));
		expect(idx.search({ q: "headphones", ...page }).items.map(d => d.id)).toEqual(["2"]);
		expect(idx.search({ q: "desk", ...page }).total).toBe(0);
		expect(idx.search({ q: "floor", ...page }).items.map(d => d.id)).toEqual(["3"]);
	});

	it("patches stock without touching the text index", () => {
		const idx = fixture();
		idx.patch("2", { inStock: true });
		expect(idx.search({ inStock: true, ...page }).total).toBe(4);
	});
});
