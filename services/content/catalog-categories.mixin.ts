/**
 * The catalog's categories (API.md, "Catalog"): create, rename, move and delete, mixed into the
 * catalog service. The tree never gets a cycle and a category in use is never deleted:
 *
 * - every change of the tree runs under one tree lock (a PostgreSQL advisory lock; SQLite has one
 *   writer anyway), so two moves cannot each pass the cycle check and together close a loop;
 * - a product write locks its category row FOR SHARE and a delete locks it FOR UPDATE, so a
 *   product cannot land in a category that is being deleted;
 * - slugs are unique by the database's unique index (409 SLUG_TAKEN).
 *
 * Each change records a catalog.category.* event in its transaction (outbox), which the search
 * read model follows (facet slugs and names, sub-category filters).
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { Op, type Transaction } from "sequelize";
import { type CategoryRecord, categorySnapshot, categoryView, createCategoryParams, parentProblem, updateCategoryParams } from "../../lib/catalog/categories";
import { ConflictError, NotFoundError, UnprocessableError } from "../../lib/errors";
import type { DbMethods } from "../../mixins/db.mixin";
import type { OutboxMethods } from "../../mixins/outbox.mixin";

type Svc = Service & DbMethods & OutboxMethods & { [k: string]: any };

interface CategoryInput {
	slug: string;
	name: string;
	parentId?: string | null;
}

/** One key for the whole tree: category writes are rare, so taking turns costs nothing. */
const TREE_LOCK = "catalog:category-tree";

const schema: Partial<ServiceSchema<any, any, any, Svc>> = {
	actions: {
		/** POST /categories → 201 `{ id, slug, name, parentId }`; 409 SLUG_TAKEN; 422 unknown parent. */
		createCategory: {
			auth: "admin",
			roles: ["catalog"],
			params: createCategoryParams,
			async handler(this: Svc, ctx: Context<CategoryInput, any>) {
				const category: CategoryRecord = { id: randomUUID(), slug: ctx.params.slug, name: ctx.params.name, parent_id: ctx.params.parentId ?? null, updated_at: new Date() };
				await this.writeCategories(category.slug, async (t: Transaction) => {
					await this.checkParent(t, undefined, category.parent_id);
					await this.models.Category.create({ ...category }, { transaction: t });
					await this.recordEvent(t, "catalog.category.created", categorySnapshot(category));
				});
				ctx.meta.$statusCode = 201;
				return categoryView(category);
			},
		},

		/** PATCH /categories/:id → 200; 404 CATEGORY_NOT_FOUND; 409 SLUG_TAKEN; 422 unknown parent or a cycle. */
		updateCategory: {
			auth: "admin",
			roles: ["catalog"],
			params: updateCategoryParams,
			async handler(this: Svc, ctx: Context<Partial<CategoryInput> & { id: string }>) {
				const { id, slug, name, parentId } = ctx.params;
				return this.writeCategories(slug, async (t: Transaction) => {
					const row = await this.lockedCategory(t, id);
					const changes: Partial<CategoryRecord> = {};
					if (slug !== undefined && slug !== row.slug) changes.slug = slug;
					if (name !== undefined && name !== row.name) changes.name = name;
					if (parentId !== undefined && parentId !== row.parent_id) {
						await this.checkParent(t, id, parentId);
						changes.parent_id = parentId;
					}
					// Nothing to change: no write and no event, so a repeated PATCH is harmless.
					if (!Object.keys(changes).length) return categoryView(row);
					const updated: CategoryRecord = { ...row, ...changes, updated_at: new Date() };
					await this.models.Category.update({ ...changes, updated_at: updated.updated_at }, { where: { id }, transaction: t });
					await this.recordEvent(t, "catalog.category.updated", categorySnapshot(updated));
					return categoryView(updated);
				});
			},
		},

		/** DELETE /categories/:id → 204; 404; 409 CATEGORY_NOT_EMPTY while sub-categories or live products use it. */
		deleteCategory: {
			auth: "admin",
			roles: ["catalog"],
			params: { id: "string|min:1|max:64" },
			async handler(this: Svc, ctx: Context<{ id: string }, any>) {
				await this.writeCategories(undefined, async (t: Transaction) => {
					const row = await this.lockedCategory(t, ctx.params.id);
					const [subcategories, products] = await Promise.all([
						this.models.Category.count({ where: { parent_id: row.id }, transaction: t }),
						// Archived products are history (orders keep their own copy of name and price): they do not hold a category.
						this.models.Product.count({ where: { category_id: row.id, status: { [Op.ne]: "archived" } }, transaction: t }),
					]);
					if (subcategories || products) {
						throw new ConflictError(`Category ${row.slug} still has ${subcategories} sub-categories and ${products} products`, "CATEGORY_NOT_EMPTY", { subcategories, products });
					}
					await this.models.Category.destroy({ where: { id: row.id }, transaction: t });
					await this.recordEvent(t, "catalog.category.deleted", { categoryId: row.id, slug: row.slug, updatedAt: new Date().toISOString() });
				});
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		/** Internal: every category with its change time, for read models rebuilding themselves (search). */
		categorySnapshots: {
			async handler(this: Svc) {
				const rows = (await this.models.Category.findAll({ order: [["id", "ASC"]], raw: true })) as unknown as CategoryRecord[];
				return { items: rows.map(categorySnapshot) };
			},
		},
	},

	methods: {
		/** Runs `fn` in a transaction under the tree lock; a slug taken meanwhile is 409 SLUG_TAKEN. */
		async writeCategories<T>(this: Svc, slug: string | undefined, fn: (t: Transaction) => Promise<T>): Promise<T> {
			try {
				return await this.transaction(async (t: Transaction) => {
					if (this.sequelize.getDialect() === "postgres") {
						await this.sequelize.query("SELECT pg_advisory_xact_lock(hashtext($1))", { bind: [`${this.sequelize.getDatabaseName()}:${TREE_LOCK}`], transaction: t });
					}
					return fn(t);
				});
			} catch (err) {
				if (this.isUniqueViolation(err)) throw new ConflictError(`Slug ${slug} is taken`, "SLUG_TAKEN");
				throw err;
			}
		},

		async lockedCategory(this: Svc, t: Transaction, id: string): Promise<CategoryRecord> {
			const row = await this.models.Category.findByPk(id, { transaction: t, lock: t.LOCK.UPDATE, raw: true });
			if (!row) throw new NotFoundError("Category", "CATEGORY_NOT_FOUND");
			return row as unknown as CategoryRecord;
		},

		/** 422 unless `parentId` may be the parent of `id` (lib/catalog/categories.parentProblem). */
		async checkParent(this: Svc, t: Transaction, id: string | undefined, parentId: string | null) {
			if (parentId === null) return;
			const rows: any[] = await this.models.Category.findAll({ attributes: ["id", "parent_id"], transaction: t, raw: true });
			const problem = parentProblem(id, parentId, rows.map(r => ({ id: r.id, parentId: r.parent_id })));
			if (problem) throw new UnprocessableError(`Invalid parent: ${problem}`, "VALIDATION_ERROR", [{ field: "parentId", message: problem }]);
		},

		/**
		 * 422 unless the category exists; in `t`, its row stays locked FOR SHARE until the product
		 * write commits, so a concurrent delete waits and then sees the product.
		 */
		async requireCategory(this: Svc, id: string, t?: Transaction) {
			const found = await this.models.Category.findByPk(id, { attributes: ["id"], transaction: t, ...(t && { lock: t.LOCK.SHARE }) });
			if (!found) throw new UnprocessableError("Unknown category", "VALIDATION_ERROR", [{ field: "categoryId", message: "no such category" }]);
		},
	},
};

/** Typed against the catalog service it is mixed into; the broker sees an ordinary partial schema. */
export const CatalogCategoriesMixin = schema as unknown as Partial<ServiceSchema>;
