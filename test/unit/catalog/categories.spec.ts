/**
 * Category rules: the input the strict validator lets through, the parent a category may take
 * (never itself or a descendant), the public view and the event snapshot.
 */
import { categorySnapshot, categoryView, createCategoryParams, parentProblem, updateCategoryParams } from "../../../lib/catalog/categories";
import { StrictValidator } from "../../../lib/validator";

const validator = new (StrictValidator as any)();
const checkCreate: (p: unknown) => true | { field?: string; actual?: unknown }[] = validator.compile(createCategoryParams);
const checkUpdate: (p: unknown) => true | { field?: string; actual?: unknown }[] = validator.compile(updateCategoryParams);
// A forbidden key is reported on the object (field undefined), naming the key in `actual`.
const fields = (r: true | { field?: string; actual?: unknown }[]) => (r === true ? [] : [...new Set(r.map(p => p.field ?? String(p.actual)))]);

describe("category input", () => {
	it("takes lower-case hyphenated slugs, a one-line name and an optional parent (null for the top level)", () => {
		expect(checkCreate({ slug: "running-shoes", name: "Running shoes" })).toBe(true);
		expect(checkCreate({ slug: "a1", name: "A", parentId: "p" })).toBe(true);
		expect(checkCreate({ slug: "top", name: "Top", parentId: null })).toBe(true);
	});

	it("refuses slugs that are not lower-case words joined by single hyphens, and names with control characters", () => {
		for (const slug of ["Audio", "two words", "a_b", "a--b", "-a", "a-", "", "é", "a/b", "s".repeat(81), "nul\u0000"]) expect([slug, fields(checkCreate({ slug, name: "X" }))]).toEqual([slug, ["slug"]]);
		for (const name of ["", "   ", "Lee\u0000", "two\nlines", "tab\there", "n".repeat(121), "\uD800"]) expect([name, fields(checkCreate({ slug: "ok", name }))]).toEqual([name, ["name"]]);
		expect(fields(checkCreate({ slug: "ok", name: "X", id: "x" }))).toEqual(["id"]);
	});

	it("lets a PATCH name any of slug, name and parent, and nothing else", () => {
		expect(checkUpdate({ id: "c" })).toBe(true);
		expect(checkUpdate({ id: "c", parentId: null })).toBe(true);
		expect(fields(checkUpdate({ id: "c", slug: "Bad" }))).toEqual(["slug"]);
		expect(fields(checkUpdate({ id: "c", updatedAt: "x" }))).toEqual(["updatedAt"]);
	});
});

describe("a category's parent", () => {
	const tree = [
		{ id: "audio", parentId: null },
		{ id: "headphones", parentId: "audio" },
		{ id: "earbuds", parentId: "headphones" },
		{ id: "books", parentId: null },
	];

	it("may be any existing category outside its own subtree, or none", () => {
		expect(parentProblem(undefined, "audio", tree)).toBeUndefined();
		expect(parentProblem("books", "earbuds", tree)).toBeUndefined();
		expect(parentProblem("earbuds", "books", tree)).toBeUndefined();
		expect(parentProblem("headphones", null, tree)).toBeUndefined();
	});

	it("must exist", () => {
		expect(parentProblem(undefined, "nope", tree)).toBe("no such category");
		expect(parentProblem("audio", "nope", tree)).toBe("no such category");
	});

	it("is never the category itself nor one of its descendants, which would close a cycle", () => {
		expect(parentProblem("audio", "audio", tree)).toBe("a category cannot be its own parent");
		expect(parentProblem("audio", "headphones", tree)).toBe("the parent is below this category: that would make a cycle");
		expect(parentProblem("audio", "earbuds", tree)).toBe("the parent is below this category: that would make a cycle");
		expect(parentProblem("headphones", "earbuds", tree)).toBe("the parent is below this category: that would make a cycle");
	});

	it("is judged without looping even if the stored tree already had a cycle", () => {
		const broken = [
			{ id: "a", parentId: "b" },
			{ id: "b", parentId: "a" },
			{ id: "c", parentId: null },
		];
		expect(parentProblem("c", "a", broken)).toBeUndefined();
		expect(parentProblem("a", "b", broken)).toBe("the parent is below this category: that would make a cycle");
	});
});

describe("what crosses the boundary", () => {
	const row = { id: "c1", slug: "audio", name: "Audio", parent_id: null, updated_at: new Date("2026-03-01T10:00:00.123Z") };
	it("shows clients id, slug, name and parentId only", () => {
		expect(categoryView({ ...row, extra: 1 } as any)).toEqual({ id: "c1", slug: "audio", name: "Audio", parentId: null });
	});
	it("gives consumers the category with its change time", () => {
		expect(categorySnapshot({ ...row, parent_id: "p" })).toEqual({ categoryId: "c1", slug: "audio", name: "Audio", parentId: "p", updatedAt: "2026-03-01T10:00:00.123Z" });
	});
});
