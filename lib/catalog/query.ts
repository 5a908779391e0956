/**
 * Listing rules of the public API: paging clamps, sort keys and price filters, kept pure.
 */
import { UnprocessableError } from "../errors";

export { clampPaging } from "../paging";

export const PRODUCT_SORTS = ["price", "-price", "name", "-name", "createdAt", "-createdAt"] as const;
export type ProductSort = (typeof PRODUCT_SORTS)[number];

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
