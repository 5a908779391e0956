/**
 * The search read model: an in-memory full-text index (MiniSearch) over product documents, with
 * typo tolerance (edit distance 1), prefix completion, filters, facets with counts, sort and
 * pagination. Pure: the search service feeds it from events and persists the documents.
 */
import MiniSearch from "minisearch";

export interface SearchDoc {
	id: string;
	sku: string;
	name: string;
	description: string;
	brand: string;
	categoryId: string;
	categorySlug: string;
	categoryName: string;
	priceAmount: number;
	currency: string;
	createdAt: string;
	inStock: boolean;
	ratingAverage: number | null;
	ratingCount: number;
}

export type SearchSort = "relevance" | "price" | "-price" | "name" | "-name" | "-createdAt" | "-rating";

export interface SearchQuery {
	q?: string;
	/** A category id or slug (an id wins), matched exactly unless `categoryIds` says what it covers. */
	category?: string;
	/** The ids the category filter covers (the category and its sub-categories), when the caller knows the tree. */
	categoryIds?: ReadonlySet<string>;
	brand?: string;
	minPrice?: number;
	maxPrice?: number;
	inStock?: boolean;
	sort?: SearchSort;
	page: number;
	pageSize: number;
}

export interface FacetValue {
	value: string;
	count: number;
}

export interface SearchResult {
	items: SearchDoc[];
	total: number;
	page: number;
	pageSize: number;
	facets: { category: FacetValue[]; brand: FacetValue[]; price: FacetValue[]; inStock: FacetValue[] };
}

/** Price buckets in minor units: [label, from (inclusive), to (exclusive)]. */
export const PRICE_BUCKETS: [string, number, number][] = [
	["0-25", 0, 2500],
	["25-50", 2500, 5000],
	["50-100", 5000, 10000],
	["100-250", 10000, 25000],
	["250+", 25000, Number.MAX_SAFE_INTEGER],
];

const priceBucket = (amount: number) => PRICE_BUCKETS.find(([, from, to]) => amount >= from && amount < to)?.[0] ?? "250+";

/** Typos within edit distance 1, but not on very short words where that matches nearly anything. */
const fuzzyFor = (term: string) => (term.length >= 4 ? 1 : 0);

/**
 * The words of a query with, for each word of 4+ letters, its adjacent transpositions
 * ("keybaord" → "keyboard", …): MiniSearch's fuzzy match is Levenshtein, where a swapped pair
 * costs two edits; with these alternatives it costs one (Damerau's optimal string alignment
 * distance 1), the commonest typo. Each word matches itself (fuzzy, and as a prefix when last) or
 * one of its transpositions exactly; the words are combined with AND.
 */
export function transpositionQuery(q: string): { combineWith: "AND"; queries: { combineWith: "OR"; queries: (string | { queries: string[]; fuzzy: false; prefix: false })[] }[] } | null {
	const words = q.toLowerCase().split(/[\s\p{P}]+/u).filter(Boolean);
	if (!words.length) return null;
	return {
		combineWith: "AND",
		queries: words.map(w => {
			const swaps = new Set<string>();
			if (w.length >= 4) {
				for (let i = 0; i + 1 < w.length; i++) {
					if (w[i] === w[i + 1]) continue;
					swaps.add(w.slice(0, i) + w[i + 1] + w[i] + w.slice(i + 2));
				}
			}
			return { combineWith: "OR" as const, queries: swaps.size ? [w, { queries: [...swaps], fuzzy: false as const, prefix: false as const }] : [w] };
		}),
	};
}

type Dimension = "category" | "brand" | "price" | "inStock";

export class ProductSearchIndex {
	private readonly docs = new Map<string, SearchDoc>();
	/** sku → id: stock events name SKUs, and a scan per event would make a bulk import quadratic. */
	private readonly bySku = new Map<string, string>();
	private readonly text = new MiniSearch<SearchDoc>({
		fields: ["name", "brand", "categoryName", "description", "sku"],
		storeFields: [],
		searchOptions: { boost: { name: 4, brand: 2, categoryName: 1.5, sku: 3 }, combineWith: "AND" },
	});

	get size(): number {
		return this.docs.size;
	}

	get(id: string): SearchDoc | undefined {
		return this.docs.get(id);
	}

	upsert(doc: SearchDoc): void {
		const old = this.docs.get(doc.id);
		if (old) {
			this.text.discard(doc.id);
			if (this.bySku.get(old.sku) === doc.id) this.bySku.delete(old.sku);
		}
		this.docs.set(doc.id, doc);
		this.bySku.set(doc.sku, doc.id);
		this.text.add(doc);
	}

	remove(id: string): void {
		const old = this.docs.get(id);
		if (!old) return;
		this.text.discard(id);
		this.docs.delete(id);
		if (this.bySku.get(old.sku) === id) this.bySku.delete(old.sku);
	}

	/** Non-text fields (stock, rating) change without re-indexing the text. */
	patch(id: string, fields: Partial<Pick<SearchDoc, "inStock" | "ratingAverage" | "ratingCount">>): void {
		const doc = this.docs.get(id);
		if (doc) this.docs.set(id, { ...doc, ...fields });
	}

	/** The documents of one category (to restate them when the category is renamed). */
	inCategory(categoryId: string): SearchDoc[] {
		return [...this.docs.values()].filter(d => d.categoryId === categoryId);
	}

	findBySku(sku: string): SearchDoc | undefined {
		const id = this.bySku.get(sku);
		return id === undefined ? undefined : this.docs.get(id);
	}

	clear(): void {
		this.text.removeAll();
		this.docs.clear();
		this.bySku.clear();
	}

	search(query: SearchQuery): SearchResult {
		const q = query.q?.trim();
		let matches: { doc: SearchDoc; score: number }[];
		if (q) {
			const last = q.toLowerCase().split(/[\s\p{P}]+/u).filter(Boolean).pop();
			const expr = transpositionQuery(q);
			matches = (expr ? this.text.search(expr, { fuzzy: fuzzyFor, prefix: t => t === last }) : [])
				.map(r => ({ doc: this.docs.get(String(r.id))!, score: r.score }))
				.filter(m => m.doc);
		} else {
			matches = [...this.docs.values()].map(doc => ({ doc, score: 0 }));
		}

		// Without the tree, the filter names a category by id or by slug; an id wins (lib/catalog/categories.ts findCategory).
		const category = query.category;
		const byId = category !== undefined && !query.categoryIds && [...this.docs.values()].some(d => d.categoryId === category);
		const inCategory = (doc: SearchDoc) => (query.categoryIds ? query.categoryIds.has(doc.categoryId) : byId ? doc.categoryId === category : doc.categorySlug === category);
		const passes = (doc: SearchDoc, except?: Dimension) =>
			(except === "category" || !category || inCategory(doc)) &&
			(except === "brand" || !query.brand || doc.brand.toLowerCase() === query.brand.toLowerCase()) &&
			(except === "price" || query.minPrice === undefined || doc.priceAmount >= query.minPrice) &&
			(except === "price" || query.maxPrice === undefined || doc.priceAmount <= query.maxPrice) &&
			(except === "inStock" || query.inStock === undefined || doc.inStock === query.inStock);

		const hits = matches.filter(m => passes(m.doc));
		const sort = query.sort ?? (q ? "relevance" : "name");
		hits.sort(comparator(sort));

		const start = (query.page - 1) * query.pageSize;
		return {
			items: hits.slice(start, start + query.pageSize).map(m => m.doc),
			total: hits.length,
			page: query.page,
			pageSize: query.pageSize,
			// Each facet counts with every filter but its own, so a chosen value's alternatives stay visible.
			facets: {
				category: facet(matches, m => passes(m.doc, "category"), d => d.categorySlug),
				brand: facet(matches, m => passes(m.doc, "brand"), d => d.brand),
				price: facet(matches, m => passes(m.doc, "price"), d => priceBucket(d.priceAmount), PRICE_BUCKETS.map(b => b[0])),
				inStock: facet(matches, m => passes(m.doc, "inStock"), d => String(d.inStock)),
			},
		};
	}

	/** Prefix completion on product names, best first. */
	suggest(prefix: string, limit = 10): { id: string; name: string }[] {
		const q = prefix.trim();
		if (!q) return [];
		return this.text
			.search(q, { fields: ["name", "brand"], prefix: true, fuzzy: false, combineWith: "AND" })
			.slice(0, limit)
			.map(r => this.docs.get(String(r.id))!)
			.filter(Boolean)
			.map(d => ({ id: d.id, name: d.name }));
	}
}

function comparator(sort: SearchSort): (a: { doc: SearchDoc; score: number }, b: { doc: SearchDoc; score: number }) => number {
	const byName = (a: SearchDoc, b: SearchDoc) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id);
	switch (sort) {
		case "price":
			return (a, b) => a.doc.priceAmount - b.doc.priceAmount || byName(a.doc, b.doc);
		case "-price":
			return (a, b) => b.doc.priceAmount - a.doc.priceAmount || byName(a.doc, b.doc);
		case "name":
			return (a, b) => byName(a.doc, b.doc);
		case "-name":
			return (a, b) => byName(b.doc, a.doc);
		case "-createdAt":
			return (a, b) => b.doc.createdAt.localeCompare(a.doc.createdAt) || byName(a.doc, b.doc);
		case "-rating":
			return (a, b) => (b.doc.ratingAverage ?? -1) - (a.doc.ratingAverage ?? -1) || byName(a.doc, b.doc);
		default:
			return (a, b) => b.score - a.score || byName(a.doc, b.doc);
	}
}

function facet<T extends { doc: SearchDoc }>(matches: T[], keep: (m: T) => boolean, key: (d: SearchDoc) => string, order?: string[]): FacetValue[] {
	const counts = new Map<string, number>();
	for (const m of matches) if (keep(m)) counts.set(key(m.doc), (counts.get(key(m.doc)) ?? 0) + 1);
	const values = [...counts].map(([value, count]) => ({ value, count }));
	if (order) return values.sort((a, b) => order.indexOf(a.value) - order.indexOf(b.value));
	return values.sort((a, b) => b.count - a.count || a.value.localeCompare(b.value));
}
