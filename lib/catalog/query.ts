/**
 * Listing rules of the public API: paging clamps, sort keys and price filters, kept pure.
 */
import { UnprocessableError } from "../errors";

export const PRODUCT_SORTS = ["price", "-price", "name", "-name", "createdAt", "-createdAt"] as const;
export type ProductSort = (typeof PRODUCT_SORTS)[number];

/** pageSize is clamped to 1..100 and page to at least 1 (API.md), never refused. */
export function clampPaging(page?: number, pageSize?: number, defaultSize = 20): { page: number; pageSize: number; offset: number } {
	const p = Math.min(Math.max(1, Math.trunc(page ?? 1)), 1_000_000);
	const size = Math.min(Math.max(1, Math.trunc(pageSize ?? defaultSize)), 100);
	return { page: p, pageSize: size, offset: (p - 1) * size };
}

const SORT_COLUMNS: Record<string, string> = { price: "price_amount", name: "name", createdAt: "created_at" };

/** Sequelize `order` for a sort key; ties broken by id so pages never overlap. */
export function sortOrder(sort: ProductSort = "name"): [string, "ASC" | "DESC"][] {
	const desc = sort.startsWith("-");
	const column = SORT_COLUMNS[desc ? sort.slice(1) : sort];
	return [
		[column, desc ? "DESC" : "ASC"],
		["id", "ASC"],
	];
}

export function checkPriceRange(minPrice?: number, maxPrice?: number): void {
	if (minPrice !== undefined && maxPrice !== undefined && minPrice > maxPrice) {
		throw new UnprocessableError("minPrice must not exceed maxPrice", "VALIDATION_ERROR", [{ field: "minPrice", message: "must not exceed maxPrice" }]);
	}
}

/** Ids of a category and all its descendants (each once, even if the tree had a cycle). */
export function withDescendants(rootId: string, categories: { id: string; parentId: string | null }[]): string[] {
	const out = [rootId];
	const seen = new Set(out);
	for (let i = 0; i < out.length; i++) {
		for (const c of categories) {
			if (c.parentId === out[i] && !seen.has(c.id)) {
				seen.add(c.id);
				out.push(c.id);
			}
		}
	}
	return out;
}
