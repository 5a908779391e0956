/**
 * Catalog: products, categories, prices (minor units) and rating summaries. Every change records
 * a catalog.product.* / catalog.category.* event in the same transaction (outbox). Product pages
 * add live rating and availability, degrading to null when the reviews or warehouse service
 * cannot answer. Categories (a tree) live in catalog-categories.mixin.ts, bulk import and export
 * in catalog-bulk.mixin.ts.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, Op, type Transaction, type WhereOptions } from "sequelize";
import { config } from "../../config";
import { isAdmin } from "../../lib/access";
import { categorySnapshot, findCategory } from "../../lib/catalog/categories";
import { DEMO_CATEGORIES, DEMO_PRODUCTS } from "../../lib/catalog/demo-data";
import { type ProductInput, type ProductRecord, checkAttributes, createParams, newProductRecord, productChanges, productSnapshot, productView, updateParams } from "../../lib/catalog/product";
import { PRODUCT_SORTS, type ProductSort, checkPriceRange, clampPaging, sortOrder, withDescendants } from "../../lib/catalog/query";
import { DEFAULT_CACHE_TTL_S, UNCACHEABLE_META } from "../../lib/cache";
import { ConflictError, NotFoundError } from "../../lib/errors";
import type { DomainEvent } from "../../lib/events";
import { AccessMixin } from "../../mixins/access.mixin";
import { ConsumerMixin, inboxMigrations } from "../../mixins/consumer.mixin";
import { widenMoneyColumns } from "../../lib/money";
import { DbMixin, type DbMethods, type Migration } from "../../mixins/db.mixin";
import { OutboxMixin, type OutboxMethods, outboxMigrations } from "../../mixins/outbox.mixin";
import { CatalogBulkMixin } from "./catalog-bulk.mixin";
import { CatalogCategoriesMixin } from "./catalog-categories.mixin";
import { productRecord as record } from "./catalog-rows";

const migrations: Migration[] = [
	{
		name: "001-catalog",
		async up(qi, T) {
			await qi.createTable("categories", {
				id: { type: T.STRING(36), primaryKey: true },
				slug: { type: T.STRING(80), allowNull: false, unique: true },
				name: { type: T.STRING(120), allowNull: false },
				parent_id: { type: T.STRING(36), allowNull: true },
			});
			await qi.createTable("products", {
				id: { type: T.STRING(36), primaryKey: true },
				sku: { type: T.STRING(64), allowNull: false, unique: true },
				name: { type: T.STRING(200), allowNull: false },
				description: { type: T.TEXT, allowNull: false },
				brand: { type: T.STRING(80), allowNull: false },
				category_id: { type: T.STRING(36), allowNull: false },
				price_amount: { type: T.INTEGER, allowNull: false },
				currency: { type: T.STRING(3), allowNull: false },
				attributes: { type: T.JSON, allowNull: false },
				images: { type: T.JSON, allowNull: false },
				weight_grams: { type: T.INTEGER, allowNull: false },
				status: { type: T.STRING(16), allowNull: false },
				rating_average: { type: T.FLOAT, allowNull: true },
				rating_count: { type: T.INTEGER, allowNull: false, defaultValue: 0 },
				created_at: { type: T.DATE(3), allowNull: false },
				updated_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("products", ["status", "category_id"]);
			await qi.addIndex("products", ["status", "price_amount"]);
			await qi.addIndex("products", ["status", "name"]);
			await qi.addIndex("products", ["status", "created_at"]);
		},
	},
	{
		name: "002-products-brand-index",
		async up(qi) {
			// The list's brand filter.
			await qi.addIndex("products", ["status", "brand"]);
		},
	},
	...outboxMigrations,
	...inboxMigrations,
	{
		name: "i9-001-money-bigint",
		async up(qi) {
			await widenMoneyColumns(qi, "products", ["price_amount"]);
		},
	},
	{
		name: "i9-002-sku-unique-regardless-of-case",
		async up(qi) {
			// API.md: a SKU is unique regardless of case ("ab-1" and "AB-1" are one SKU). SKUs are ASCII, so lower() is exact on both databases.
			await qi.sequelize.query("CREATE UNIQUE INDEX products_sku_lower_uq ON products (lower(sku))");
		},
	},
	{
		name: "i12-001-category-changes",
		async up(qi, T) {
			// Category events carry the change time so read models can ignore one that arrives late.
			await qi.addColumn("categories", "updated_at", { type: T.DATE(3), allowNull: true });
			await qi.bulkUpdate("categories", { updated_at: new Date() }, {});
			// Deleting a category asks for its children and its products.
			await qi.addIndex("categories", ["parent_id"]);
			await qi.addIndex("products", ["category_id"]);
		},
	},
];

type Svc = Service & DbMethods & OutboxMethods & { [k: string]: any };

const CatalogService: ServiceSchema<any, any, any, Svc> = {
	name: "catalog",
	mixins: [
		DbMixin({
			name: "catalog",
			migrations,
			models: s => ({
				Product: s.define(
					"Product",
					{
						id: { type: DataTypes.STRING(36), primaryKey: true },
						sku: DataTypes.STRING(64),
						name: DataTypes.STRING(200),
						description: DataTypes.TEXT,
						brand: DataTypes.STRING(80),
						category_id: DataTypes.STRING(36),
						price_amount: DataTypes.BIGINT,
						currency: DataTypes.STRING(3),
						attributes: DataTypes.JSON,
						images: DataTypes.JSON,
						weight_grams: DataTypes.INTEGER,
						status: DataTypes.STRING(16),
						rating_average: DataTypes.FLOAT,
						rating_count: DataTypes.INTEGER,
						created_at: DataTypes.DATE(3),
						updated_at: DataTypes.DATE(3),
					},
					{ tableName: "products", timestamps: false },
				),
				Category: s.define(
					"Category",
					{ id: { type: DataTypes.STRING(36), primaryKey: true }, slug: DataTypes.STRING(80), name: DataTypes.STRING(120), parent_id: DataTypes.STRING(36), updated_at: DataTypes.DATE(3) },
					{ tableName: "categories", timestamps: false },
				),
			}),
		}),
		OutboxMixin,
		ConsumerMixin,
		AccessMixin,
		CatalogCategoriesMixin,
		CatalogBulkMixin,
	],

	settings: {
		// How long a product page waits for its rating and availability before showing null.
		enrichTimeoutMs: 400,
	},

	actions: {
		categories: {
			auth: "public",
			// Cached (lib/cache.ts): cleaned by catalog.category.* events.
			cache: { ttl: DEFAULT_CACHE_TTL_S },
			async handler(this: Svc) {
				const rows: any[] = await this.models.Category.findAll({ order: [["name", "ASC"]], raw: true });
				return { items: rows.map(c => ({ id: c.id, slug: c.slug, name: c.name, parentId: c.parent_id })) };
			},
		},

		list: {
			auth: "public",
			// Cached by every parameter (lib/cache.ts): cleaned by catalog.product.*, catalog.category.*, reviews.review.published.
			cache: { ttl: DEFAULT_CACHE_TTL_S },
			params: {
				category: "string|max:80|optional",
				brand: "string|max:80|optional",
				minPrice: "number|integer|min:0|max:100000000|convert|optional",
				maxPrice: "number|integer|min:0|max:100000000|convert|optional",
				sort: { type: "enum", values: PRODUCT_SORTS, optional: true },
				page: "number|integer|convert|optional",
				pageSize: "number|integer|convert|optional",
			},
			async handler(this: Svc, ctx: Context<{ category?: string; brand?: string; minPrice?: number; maxPrice?: number; sort?: ProductSort; page?: number; pageSize?: number }>) {
				const { category, brand, minPrice, maxPrice, sort } = ctx.params;
				checkPriceRange(minPrice, maxPrice);
				const { page, pageSize, offset } = clampPaging(ctx.params.page, ctx.params.pageSize);
				const where: Record<string | symbol, unknown> = { status: "active" };
				if (category) {
					const categories = await this.allCategories();
					// An id wins over a slug (lib/catalog/categories.ts).
					const root = findCategory(category, categories as { id: string; slug: string }[]);
					if (!root) return { items: [], total: 0, page, pageSize };
					where.category_id = { [Op.in]: withDescendants(root.id, categories) };
				}
				if (brand) where.brand = brand;
				if (minPrice !== undefined || maxPrice !== undefined) {
					where.price_amount = { ...(minPrice !== undefined && { [Op.gte]: minPrice }), ...(maxPrice !== undefined && { [Op.lte]: maxPrice }) };
				}
				const { rows, count } = await this.models.Product.findAndCountAll({ where: where as WhereOptions, order: sortOrder(sort), limit: pageSize, offset, raw: true });
				return { items: rows.map(r => productView(record(r))), total: count, page, pageSize };
			},
		},

		get: {
			auth: "public",
			// Cached by id and caller kind (admins see drafts): cleaned by product, category, stock and review events (lib/cache.ts).
			cache: { ttl: DEFAULT_CACHE_TTL_S, byRole: true } as any,
			params: { id: "string|max:64" },
			async handler(this: Svc, ctx: Context<{ id: string }, any>) {
				const row: any = await this.models.Product.findByPk(ctx.params.id, { raw: true });
				if (!row || (row.status !== "active" && !isAdmin(ctx.meta.user))) throw new NotFoundError("Product", "PRODUCT_NOT_FOUND");
				const [rating, availability] = await Promise.all([
					this.optionalCall(ctx, "reviews.summary", { productId: row.id }),
					this.optionalCall(ctx, "warehouse.availability", { sku: row.sku }),
				]);
				// A page degraded by a slow or failing dependency is not cached: it would outlive the failure by the TTL (lib/cache.ts).
				if ((!rating && this.deployed("reviews")) || (!availability && this.deployed("warehouse"))) ctx.meta[UNCACHEABLE_META] = true;
				return {
					...productView(record(row)),
					rating: rating ? { average: rating.average, count: rating.count } : null,
					availability: availability ? { inStock: availability.inStock, quantity: availability.quantity } : null,
				};
			},
		},

		getMany: {
			params: { ids: { type: "array", items: "string|max:64", max: 500 } },
			async handler(this: Svc, ctx: Context<{ ids: string[] }>) {
				const ids = [...new Set(ctx.params.ids)];
				if (!ids.length) return [];
				// Plain SQL (lib/db/sql.ts): every checkout, quote and cart view that misses the per-product
				// cache (lib/catalog/products-by-id.ts) lands here. One statement text for any number of ids on PostgreSQL.
				const p = this.sql.params();
				const where = p.oneOf("id", ids);
				const rows: any[] = await this.sql.select(`SELECT id, sku, name, price_amount, currency, status, weight_grams FROM products WHERE ${where}`, p.values);
				return rows.map(r => ({ id: r.id, sku: r.sku, name: r.name, price: { amount: Number(r.price_amount), currency: r.currency }, status: r.status, weightGrams: r.weight_grams }));
			},
		},

		/** Full snapshots of active products, for read models rebuilding themselves (search reindex). */
		snapshots: {
			params: { page: "number|integer|min:1|optional", pageSize: "number|integer|min:1|max:500|optional" },
			async handler(this: Svc, ctx: Context<{ page?: number; pageSize?: number }>) {
				const pageSize = ctx.params.pageSize ?? 200;
				const { rows, count } = await this.models.Product.findAndCountAll({ where: { status: "active" }, order: [["id", "ASC"]], limit: pageSize, offset: ((ctx.params.page ?? 1) - 1) * pageSize, raw: true });
				const categories = new Map<string, { slug: string; name: string }>((await this.allCategories()).map((c: any) => [c.id, c]));
				return { items: rows.map((r: any) => productSnapshot(record(r), categories.get(r.category_id))), total: count };
			},
		},

		create: {
			auth: "admin",
			roles: ["catalog"],
			params: createParams,
			async handler(this: Svc, ctx: Context<ProductInput, any>) {
				checkAttributes(ctx.params.attributes);
				const product = newProductRecord(ctx.params, randomUUID(), new Date());
				try {
					await this.transaction(async (t: Transaction) => {
						await this.requireCategory(ctx.params.categoryId, t);
						await this.models.Product.create({ ...product }, { transaction: t });
						await this.recordProduct(t, "catalog.product.created", product);
					});
				} catch (err) {
					// The unique index decides between concurrent creates of one SKU.
					if (this.isUniqueViolation(err)) throw new ConflictError(`SKU ${product.sku} is taken`, "SKU_TAKEN");
					throw err;
				}
				ctx.meta.$statusCode = 201;
				return productView(product);
			},
		},

		update: {
			auth: "admin",
			roles: ["catalog"],
			params: updateParams,
			async handler(this: Svc, ctx: Context<Partial<ProductInput> & { id: string }>) {
				const { id, ...patch } = ctx.params;
				checkAttributes(patch.attributes);
				return this.transaction(async (t: Transaction) => {
					if (patch.categoryId !== undefined) await this.requireCategory(patch.categoryId, t);
					const [n] = await this.models.Product.update(productChanges(patch, new Date()), { where: { id, status: { [Op.ne]: "archived" } }, transaction: t });
					if (!n) throw new NotFoundError("Product", "PRODUCT_NOT_FOUND");
					const product = record(await this.models.Product.findByPk(id, { transaction: t, raw: true }));
					await this.recordProduct(t, "catalog.product.updated", product);
					return productView(product);
				});
			},
		},

		archive: {
			auth: "admin",
			roles: ["catalog"],
			params: { id: "string|max:64" },
			async handler(this: Svc, ctx: Context<{ id: string }, any>) {
				await this.transaction(async (t: Transaction) => {
					const row: any = await this.models.Product.findByPk(ctx.params.id, { transaction: t, raw: true });
					if (!row) throw new NotFoundError("Product", "PRODUCT_NOT_FOUND");
					// Archiving twice is a no-op: one event per archival.
					const [n] = await this.models.Product.update({ status: "archived", updated_at: new Date() }, { where: { id: row.id, status: { [Op.ne]: "archived" } }, transaction: t });
					if (n) await this.recordEvent(t, "catalog.product.archived", { productId: row.id, sku: row.sku });
				});
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		/** Loads the demo catalog: inserts what is missing, changes nothing that exists. */
		seedDemo: {
			async handler(this: Svc) {
				return this.seedDemoCatalog();
			},
		},
	},

	subscriptions: {
		/** The rating summary the catalog keeps (DOMAIN.md) follows published reviews. */
		async "reviews.review.published"(this: Svc, e: DomainEvent<"reviews.review.published">, t: Transaction) {
			await this.applyRatingSummary(e.productId, e.summary, t);
		},
	},

	methods: {
		async allCategories(this: Svc) {
			const rows: any[] = await this.models.Category.findAll({ raw: true });
			return rows.map(c => ({ id: c.id, slug: c.slug, name: c.name, parentId: c.parent_id }));
		},

		async recordProduct(this: Svc, t: Transaction, name: "catalog.product.created" | "catalog.product.updated", product: ProductRecord) {
			const category: any = await this.models.Category.findByPk(product.category_id, { transaction: t, raw: true });
			await this.recordEvent(t, name, productSnapshot(product, category ?? undefined));
		},

		/**
		 * Stores a product's rating summary. Summaries only grow (published reviews stay), so one
		 * with fewer reviews than the stored one is older and arrived late: it changes nothing.
		 */
		async applyRatingSummary(this: Svc, productId: string, summary: { average: number; count: number }, t?: Transaction): Promise<boolean> {
			const [n] = await this.models.Product.update(
				{ rating_average: summary.average, rating_count: summary.count },
				{ where: { id: productId, rating_count: { [Op.lte]: summary.count } }, transaction: t },
			);
			return n > 0;
		},

		/** A dependency that may be absent or down: its answer, or null — quickly, never an error. */
		/** Whether a service is in the cluster now. */
		deployed(this: Svc, name: string): boolean {
			return this.broker.registry.hasService(name, undefined as any);
		},

		async optionalCall(this: Svc, ctx: Context, action: string, params: Record<string, unknown>) {
			// Not deployed: no call, no error to catch (issue 10).
			if (!this.deployed(action.slice(0, action.indexOf(".")))) return null;
			try {
				return await ctx.call(action, params, { timeout: this.settings.enrichTimeoutMs, retries: 0 });
			} catch (err) {
				this.logger.debug(`${action} unavailable for a product page; answering null`, (err as Error).message);
				return null;
			}
		},

		/** Replicas or `npm run seed` racing the first start: the loser of a unique index tries again and finds the rows there. */
		async seedDemoCatalog(this: Svc): Promise<{ categories: number; products: number }> {
			for (let attempt = 1; ; attempt++) {
				try {
					return await this.transaction((t: Transaction) => this.insertDemoCatalog(t));
				} catch (err) {
					if (!this.isUniqueViolation(err) || attempt >= 3) throw err;
					this.logger.info("Demo catalog: another node inserted some rows at the same time; trying again");
				}
			}
		},

		async insertDemoCatalog(this: Svc, t: Transaction): Promise<{ categories: number; products: number }> {
			let categories = 0;
			let products = 0;
			const bySlug = new Map(DEMO_CATEGORIES.map(c => [c.slug, c]));
			const existingCategories = new Set((await this.models.Category.findAll({ attributes: ["id"], transaction: t, raw: true })).map((r: any) => r.id));
			for (const c of DEMO_CATEGORIES) {
				if (existingCategories.has(c.id)) continue;
				const category = { id: c.id, slug: c.slug, name: c.name, parent_id: c.parentSlug ? bySlug.get(c.parentSlug)!.id : null, updated_at: new Date() };
				await this.models.Category.create(category, { transaction: t });
				await this.recordEvent(t, "catalog.category.created", categorySnapshot(category));
				categories++;
			}
			const existing = new Set((await this.models.Product.findAll({ attributes: ["sku"], transaction: t, raw: true })).map((r: any) => r.sku));
			const base = Date.UTC(2026, 0, 1);
			for (const [i, p] of DEMO_PRODUCTS.entries()) {
				if (existing.has(p.sku)) continue;
				// Deterministic creation times so "-createdAt" sorts the same everywhere.
				const at = new Date(base + i * 3_600_000);
				const product = newProductRecord({ ...p, categoryId: bySlug.get(p.categorySlug)!.id, status: "active" }, p.id, at);
				await this.models.Product.create({ ...product }, { transaction: t });
				await this.recordProduct(t, "catalog.product.created", product);
				products++;
			}
			return { categories, products };
		},
	},

	async started(this: Svc) {
		if (config().SEED_DEMO && (await this.models.Product.count()) === 0) {
			const r = await this.seedDemoCatalog();
			this.logger.info(`Demo catalog loaded: ${r.products} products in ${r.categories} categories`);
		}
	},
};

export default CatalogService;
