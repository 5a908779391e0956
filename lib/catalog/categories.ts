/**
 * Categories as a tree (API.md, "Catalog"): the rules of their input, the parent a category may
 * take (one that exists and is not itself or below it, so the tree never has a cycle), the
 * public view and the event snapshot. Pure; the catalog service enforces them in a transaction.
 */
import type { CategorySnapshot } from "../events";
import { singleLine } from "../text";

/** A categories row. */
export interface CategoryRecord {
	id: string;
	slug: string;
	name: string;
	parent_id: string | null;
	updated_at: Date | string | null;
}

export interface CategoryNode {
	id: string;
	parentId: string | null;
}

/** Lower-case words of letters and digits joined by single hyphens ("running-shoes"): safe in a URL as it is. */
export const SLUG_PATTERN = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;

const slug = { type: "string", min: 1, max: 80, pattern: SLUG_PATTERN, messages: { stringPattern: "The 'slug' field must be lower-case letters and digits in words joined by single hyphens, e.g. running-shoes." } };
const name = singleLine(1, 120);
/** null or absent: a top-level category. */
const parentId = { type: "string", min: 1, max: 64, nullable: true, optional: true };

/** POST /categories (fastest-validator; the broker's validator refuses any other field). */
export const createCategoryParams = { slug, name, parentId };

/** PATCH /categories/:id: any of the three. */
export const updateCategoryParams = { id: "string|min:1|max:64", slug: { ...slug, optional: true }, name: { ...name, optional: true }, parentId };

/**
 * Why `parentId` cannot be the parent of category `id` (undefined for a new one), or undefined
 * when it can: it must exist, and must be neither the category itself nor one of its
 * descendants, which would close a cycle. null (top level) is always fine.
 */
export function parentProblem(id: string | undefined, parentId: string | null, categories: CategoryNode[]): string | undefined {
	if (parentId === null) return undefined;
	const byId = new Map(categories.map(c => [c.id, c]));
	if (!byId.has(parentId)) return "no such category";
	if (id === undefined) return undefined;
	const seen = new Set<string>();
	for (let at: string | null = parentId; at !== null && !seen.has(at); at = byId.get(at)?.parentId ?? null) {
		if (at === id) return at === parentId ? "a category cannot be its own parent" : "the parent is below this category: that would make a cycle";
		seen.add(at);
	}
	return undefined;
}

/**
 * The category a `?category=` filter names (API.md: GET /products?category=, GET /search?category=):
 * an id or a slug. An id wins: a value that is one category's id and another's slug (a slug may
 * look like an id; SLUG_PATTERN takes a UUID) always names the category with that id, whatever
 * order the categories come in, so nobody can take over another category's filter with a slug.
 */
export function findCategory<T extends { id: string; slug: string }>(key: string, categories: Iterable<T>): T | undefined {
	let bySlug: T | undefined;
	for (const c of categories) {
		if (c.id === key) return c;
		if (bySlug === undefined && c.slug === key) bySlug = c;
	}
	return bySlug;
}

const iso = (d: Date | string | null) => new Date(d ?? 0).toISOString();

/** What clients see of a category (API.md: `{ id, slug, name, parentId }`). */
export function categoryView(c: CategoryRecord) {
	return { id: c.id, slug: c.slug, name: c.name, parentId: c.parent_id ?? null };
}

/** The payload of catalog.category.created / .updated. */
export function categorySnapshot(c: CategoryRecord): CategorySnapshot {
	return { categoryId: c.id, slug: c.slug, name: c.name, parentId: c.parent_id ?? null, updatedAt: iso(c.updated_at) };
}
