/**
 * Paging of every list (shared/API.md: `?page=1&pageSize=20`, pageSize clamped to 1..100), in
 * one place. Pages are clamped too, to 1..MAX_PAGE, whatever number arrives: `page=1e20` or
 * `page=-4` is a page, never an offset no database can take (issue 9).
 */
export const MAX_PAGE = 1_000_000;
export const MAX_PAGE_SIZE = 100;

/** The query parameters of a paged list (numbers from the query string need `convert`). */
export const PAGING_PARAMS = {
	page: "number|integer|convert|optional",
	pageSize: "number|integer|convert|optional",
} as const;

const clamp = (n: number, lo: number, hi: number) => Math.min(Math.max(lo, n), hi);

/** Page and size within their bounds, and the row offset they stand for (at most (MAX_PAGE - 1) × 100). */
export function clampPaging(page?: number, pageSize?: number, defaultSize = 20): { page: number; pageSize: number; offset: number } {
	const p = clamp(Number.isFinite(page) ? Math.trunc(page as number) : 1, 1, MAX_PAGE);
	const size = clamp(Number.isFinite(pageSize) ? Math.trunc(pageSize as number) : defaultSize, 1, MAX_PAGE_SIZE);
	return { page: p, pageSize: size, offset: (p - 1) * size };
}
