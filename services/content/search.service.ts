/**
 * Search: a read model of the catalog built only from events (products, categories, stock,
 * ratings) plus a `reindex` that rebuilds it from the catalog. Categories give documents their
 * current slug and name (facets follow a rename) and a category filter its sub-categories. Documents persist in the service's own database;
 * each replica keeps an in-memory index and follows the table, so all replicas converge within a
 * second whichever of them handled an event.
 */
import { upsertIfNewer } from "../../lib/db/newer-upsert";
import { eventStamp } from "../../lib/search/freshness";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, Op, type Transaction } from "sequelize";
import { config } from "../../config";
import { serviceAppears } from "../../lib/await-service";
import { withDescendants } from "../../lib/catalog/query";
import { findCategory } from "../../lib/catalog/categories";
import type { CategorySnapshot, DomainEvent, ProductSnapshot } from "../../lib/events";
import { clampPaging } from "../../lib/paging";
import { ProductSearchIndex, type SearchDoc, type SearchSort } from "../../lib/search/search-index";
import { AccessMixin } from "../../mixins/access.mixin";
import { ConsumerMixin, inboxMigrations } from "../../mixins/consumer.mixin";
import { DbMixin, type DbMethods, type Migration } from "../../mixins/db.mixin";

/**
 * How long a search answer is cached (s). Short: a search replica's in-memory index follows the
 * documents table on its own poll (up to pollIntervalMs after the event), which may be after the
 * event's clean; so a search answer is at most this much older than its index (lib/cache.ts).
 */
const SEARCH_CACHE_TTL_S = 3;

const migrations: Migration[] = [
	{
		name: "001-search-documents",
		async up(qi, T) {
			await qi.createTable("search_documents", {
				id: { type: T.STRING(36), primaryKey: true },
				sku: { type: T.STRING(64), allowNull: false },
				status: { type: T.STRING(16), allowNull: false },
				doc: { type: T.JSON, allowNull: false },
				source_updated_at: { type: T.STRING(32), allowNull: false },
				updated_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("search_documents", ["updated_at"]);
			await qi.addIndex("search_documents", ["sku"]);
			await qi.createTable("search_stock", {
				sku: { type: T.STRING(64), primaryKey: true },
				in_stock: { type: T.BOOLEAN, allowNull: false },
				updated_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.createTable("search_ratings", {
				product_id: { type: T.STRING(36), primaryKey: true },
				average: { type: T.FLOAT, allowNull: false },
				count: { type: T.INTEGER, allowNull: false },
				updated_at: { type: T.DATE(3), allowNull: false },
			});
		},
	},
	...inboxMigrations,
	{
		name: "i8-001-search-stock-stamp",
		async up(qi, T) {
			// The stamp of the event the stock state came from (lib/search/freshness.ts): older events change nothing.
			await qi.addColumn("search_stock", "source_stamp", { type: T.STRING(80), allowNull: true });
		},
	},
	{
		name: "i12-001-search-categories",
		async up(qi, T) {
			// The category tree as the catalog's events describe it; a deleted one stays as a tombstone so a late update cannot bring it back.
			await qi.createTable("search_categories", {
				id: { type: T.STRING(36), primaryKey: true },
				slug: { type: T.STRING(80), allowNull: false },
				name: { type: T.STRING(120), allowNull: false },
				parent_id: { type: T.STRING(36), allowNull: true },
				deleted: { type: T.BOOLEAN, allowNull: false },
				source_updated_at: { type: T.STRING(32), allowNull: false },
				updated_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("search_categories", ["updated_at"]);
		},
	},
];

const SORTS: SearchSort[] = ["relevance", "price", "-price", "name", "-name", "-createdAt", "-rating"];
/** Rows committed in the same millisecond as the last poll are read again rather than missed. */
const POLL_OVERLAP_MS = 2000;

interface CategoryRow {
	id: string;
	slug: string;
	name: string;
	parent_id: string | null;
	deleted: boolean | number;
	source_updated_at: string;
}

type Svc = Service & DbMethods & {
	index: ProductSearchIndex;
	/** What each product's document was last built from (`status@source_updated_at`), so a poll that reads it again skips it. */
	appliedDocs: Map<string, string>;
	/** Live categories by id. */
	categories: Map<string, { id: string; slug: string; name: string; parentId: string | null }>;
	stock: Map<string, boolean>;
	ratings: Map<string, { average: number; count: number }>;
	lastPoll: Date;
	pollTimer?: NodeJS.Timeout;
	[k: string]: any;
};

function toDoc(p: ProductSnapshot): SearchDoc {
	return {
		id: p.productId,
		sku: p.sku,
		name: p.name,
		description: p.description,
		brand: p.brand,
		categoryId: p.categoryId,
		categorySlug: p.categorySlug,
		categoryName: p.categoryName,
		priceAmount: p.price.amount,
		currency: p.price.currency,
		createdAt: p.createdAt,
		inStock: false,
		ratingAverage: p.rating?.average ?? null,
		ratingCount: p.rating?.count ?? 0,
	};
}

function publicItem(d: SearchDoc) {
	return {
		id: d.id,
		sku: d.sku,
		name: d.name,
		brand: d.brand,
		categoryId: d.categoryId,
		price: { amount: d.priceAmount, currency: d.currency },
		inStock: d.inStock,
		rating: d.ratingCount ? { average: d.ratingAverage, count: d.ratingCount } : null,
	};
}

const SearchService: ServiceSchema<any, any, any, Svc> = {
	name: "search",
	mixins: [
		DbMixin({
			name: "search",
			migrations,
			models: s => ({
				Document: s.define("SearchDocument", { id: { type: DataTypes.STRING(36), primaryKey: true }, sku: DataTypes.STRING(64), status: DataTypes.STRING(16), doc: DataTypes.JSON, source_updated_at: DataTypes.STRING(32), updated_at: DataTypes.DATE(3) }, { tableName: "search_documents", timestamps: false }),
				Stock: s.define("SearchStock", { sku: { type: DataTypes.STRING(64), primaryKey: true }, in_stock: DataTypes.BOOLEAN, updated_at: DataTypes.DATE(3) }, { tableName: "search_stock", timestamps: false }),
				Category: s.define(
					"SearchCategory",
					{ id: { type: DataTypes.STRING(36), primaryKey: true }, slug: DataTypes.STRING(80), name: DataTypes.STRING(120), parent_id: DataTypes.STRING(36), deleted: DataTypes.BOOLEAN, source_updated_at: DataTypes.STRING(32), updated_at: DataTypes.DATE(3) },
					{ tableName: "search_categories", timestamps: false },
				),
				Rating: s.define("SearchRating", { product_id: { type: DataTypes.STRING(36), primaryKey: true }, average: DataTypes.FLOAT, count: DataTypes.INTEGER, updated_at: DataTypes.DATE(3) }, { tableName: "search_ratings", timestamps: false }),
			}),
		}),
		ConsumerMixin,
		AccessMixin,
	],

	settings: { pollIntervalMs: 1000 },

	actions: {
		search: {
			auth: "public",
			// Cached by every parameter (lib/cache.ts), briefly: each replica's index follows the
			// documents table on its own poll (pollIntervalMs), after the event's clean.
			cache: { ttl: SEARCH_CACHE_TTL_S },
			params: {
				q: "string|max:200|optional",
				category: "string|max:100|optional",
				brand: "string|max:80|optional",
				minPrice: "number|integer|min:0|max:100000000|convert|optional",
				maxPrice: "number|integer|min:0|max:100000000|convert|optional",
				inStock: "boolean|convert|optional",
				sort: { type: "enum", values: SORTS, optional: true },
				page: "number|integer|convert|optional",
				pageSize: "number|integer|convert|optional",
			},
			handler(this: Svc, ctx: Context<any>) {
				const p = ctx.params;
				const { page, pageSize } = clampPaging(p.page, p.pageSize);
				const result = this.index.search({ ...p, categoryIds: p.category ? this.categoryFilter(p.category) : undefined, page, pageSize });
				return { ...result, items: result.items.map(publicItem) };
			},
		},

		suggest: {
			auth: "public",
			cache: { ttl: SEARCH_CACHE_TTL_S },
			params: { q: "string|max:100" },
			handler(this: Svc, ctx: Context<{ q: string }>) {
				return { items: this.index.suggest(ctx.params.q, 10) };
			},
		},

		reindex: {
			auth: "admin",
			roles: ["catalog"],
			async handler(this: Svc, ctx: Context) {
				return { indexed: await this.rebuildFromCatalog(ctx) };
			},
		},
	},

	subscriptions: {
		"catalog.product.created"(this: Svc, e: DomainEvent<"catalog.product.created">, t: Transaction) {
			return this.storeProduct(e, t);
		},
		"catalog.product.updated"(this: Svc, e: DomainEvent<"catalog.product.updated">, t: Transaction) {
			return this.storeProduct(e, t);
		},
		async "catalog.product.archived"(this: Svc, e: DomainEvent<"catalog.product.archived">, t: Transaction) {
			await this.models.Document.update({ status: "archived", updated_at: new Date() }, { where: { id: e.productId }, transaction: t });
			t.afterCommit(() => this.index.remove(e.productId));
		},
		"catalog.category.created"(this: Svc, e: DomainEvent<"catalog.category.created">, t: Transaction) {
			return this.storeCategory(e, false, t);
		},
		"catalog.category.updated"(this: Svc, e: DomainEvent<"catalog.category.updated">, t: Transaction) {
			return this.storeCategory(e, false, t);
		},
		"catalog.category.deleted"(this: Svc, e: DomainEvent<"catalog.category.deleted">, t: Transaction) {
			return this.storeCategory({ categoryId: e.categoryId, slug: e.slug, name: e.slug, parentId: null, updatedAt: e.updatedAt }, true, t);
		},
		/** Keeps the newest stock state of a sku (lib/search/freshness.ts): a late event changes nothing. */
		async "warehouse.stock.changed"(this: Svc, e: DomainEvent<"warehouse.stock.changed">, t: Transaction) {
			const inStock = e.totalAvailable > 0;
			const stamp = eventStamp(e);
			const row = { sku: e.sku, in_stock: inStock, source_stamp: stamp, updated_at: new Date() };
			if (await upsertIfNewer(this.sequelize, t, { table: "search_stock", key: "sku", row, newer: "held.source_stamp IS NULL OR held.source_stamp < excluded.source_stamp", marker: ["source_stamp", stamp] })) {
				t.afterCommit(() => this.applyStock(e.sku, inStock));
			}
		},
		/** Keeps the summary with the most reviews (lib/search/freshness.ts): a late one changes nothing. */
		async "reviews.review.published"(this: Svc, e: DomainEvent<"reviews.review.published">, t: Transaction) {
			const row = { product_id: e.productId, average: e.summary.average, count: e.summary.count, updated_at: new Date() };
			if (await upsertIfNewer(this.sequelize, t, { table: "search_ratings", key: "product_id", row, newer: "held.count <= excluded.count", marker: ["count", e.summary.count] })) {
				t.afterCommit(() => this.applyRating(e.productId, e.summary));
			}
		},
	},

	methods: {
		/** Keeps the newest snapshot of a product; an older one arriving late changes nothing. */
		async storeProduct(this: Svc, p: ProductSnapshot, t: Transaction) {
			// Locked: a concurrent handler of the same product waits and then compares with what this one wrote.
			const existing: any = await this.models.Document.findByPk(p.productId, { transaction: t, lock: t.LOCK.UPDATE });
			if (existing && existing.source_updated_at > p.updatedAt) return;
			const status = p.status === "active" ? "active" : "archived";
			const row = { id: p.productId, sku: p.sku, status, doc: toDoc(p), source_updated_at: p.updatedAt, updated_at: new Date() };
			await this.models.Document.upsert(row, { transaction: t });
			t.afterCommit(() => this.applyDocument(row));
		},

		/** Keeps the newest state of a category (a deletion is a state too); an older one arriving late changes nothing. */
		async storeCategory(this: Svc, c: CategorySnapshot, deleted: boolean, t: Transaction) {
			const existing: any = await this.models.Category.findByPk(c.categoryId, { transaction: t, raw: true, lock: t.LOCK.UPDATE });
			if (existing && existing.source_updated_at > c.updatedAt) return;
			const row: CategoryRow = { id: c.categoryId, slug: c.slug, name: c.name, parent_id: c.parentId, deleted, source_updated_at: c.updatedAt };
			await this.models.Category.upsert({ ...row, updated_at: new Date() }, { transaction: t });
			t.afterCommit(() => this.applyCategory(row));
		},

		/** A category's new slug, name or place: the documents in it show the new slug and name (facets, text). */
		applyCategory(this: Svc, row: CategoryRow) {
			if (row.deleted) this.categories.delete(row.id);
			else this.categories.set(row.id, { id: row.id, slug: row.slug, name: row.name, parentId: row.parent_id });
			const current = this.categories.get(row.id);
			if (!current) return;
			for (const doc of this.index.inCategory(row.id)) {
				if (doc.categorySlug !== current.slug || doc.categoryName !== current.name) this.index.upsert({ ...doc, categorySlug: current.slug, categoryName: current.name });
			}
		},

		/** The ids a category filter covers (the category and its sub-categories), or undefined for a category this index does not know. */
		categoryFilter(this: Svc, category: string): ReadonlySet<string> | undefined {
			const all = [...this.categories.values()];
			// An id wins over a slug (lib/catalog/categories.ts), as on GET /products.
			const root = findCategory(category, all);
			return root ? new Set(withDescendants(root.id, all)) : undefined;
		},

		applyDocument(this: Svc, row: { id: string; status: string; doc: SearchDoc; source_updated_at?: string }) {
			// The poll re-reads what this replica applied a moment ago: re-indexing its text again would be wasted work.
			const version = `${row.status}@${row.source_updated_at ?? ""}`;
			if (row.source_updated_at && this.appliedDocs.get(row.id) === version) return;
			this.appliedDocs.set(row.id, version);
			if (row.status !== "active") return this.index.remove(row.id);
			const rating = this.ratings.get(row.id);
			const category = this.categories.get(row.doc.categoryId);
			this.index.upsert({
				...row.doc,
				// The category as it is now, even if the product's snapshot predates a rename.
				...(category && { categorySlug: category.slug, categoryName: category.name }),
				inStock: this.stock.get(row.doc.sku) ?? false,
				ratingAverage: rating?.average ?? row.doc.ratingAverage,
				ratingCount: rating?.count ?? row.doc.ratingCount,
			});
		},

		applyStock(this: Svc, sku: string, inStock: boolean) {
			// Documents take their stock from this map when they are (re)built, so an unchanged value has nothing to change.
			if (this.stock.get(sku) === inStock) return;
			this.stock.set(sku, inStock);
			const doc = this.index.findBySku(sku);
			if (doc) this.index.patch(doc.id, { inStock });
		},

		applyRating(this: Svc, productId: string, summary: { average: number; count: number }) {
			this.ratings.set(productId, summary);
			this.index.patch(productId, { ratingAverage: summary.average, ratingCount: summary.count });
		},

		/** Loads what changed since the last pass (all of it on the first). */
		async followTable(this: Svc) {
			const since = this.lastPoll;
			const now = new Date();
			const where = { updated_at: { [Op.gte]: since } };
			const [categories, stock, ratings, docs] = await Promise.all([
				this.models.Category.findAll({ where, raw: true }),
				this.models.Stock.findAll({ where, raw: true }),
				this.models.Rating.findAll({ where, raw: true }),
				this.models.Document.findAll({ where, raw: true }),
			]);
			for (const c of categories as any[]) this.applyCategory(c);
			for (const s of stock as any[]) this.applyStock(s.sku, Boolean(s.in_stock));
			for (const r of ratings as any[]) this.applyRating(r.product_id, { average: r.average, count: r.count });
			for (const d of docs as any[]) this.applyDocument({ ...d, doc: typeof d.doc === "string" ? JSON.parse(d.doc) : d.doc });
			this.lastPoll = new Date(now.getTime() - POLL_OVERLAP_MS);
		},

		async fillCategories(this: Svc) {
			if (!(await serviceAppears(this.broker, "catalog", 30_000, () => this.pollTimer === undefined))) return;
			if (this.categories.size) return;
			const { items }: { items: CategorySnapshot[] } = await this.broker.call("catalog.categorySnapshots", {}, { timeout: 10_000 });
			for (const c of items) await this.transaction(t => this.storeCategory(c, false, t));
		},

		/** Rebuilds every document from the catalog (active products), then follows events again. */
		async rebuildFromCatalog(this: Svc, ctx: Context): Promise<number> {
			const categories: { items: CategorySnapshot[] } = await ctx.call("catalog.categorySnapshots");
			for (const c of categories.items) await this.transaction(t => this.storeCategory(c, false, t));
			// Categories this index knows and the catalog no longer has were deleted while it was not listening.
			const live = new Set(categories.items.map(c => c.categoryId));
			for (const gone of [...this.categories.values()].filter(c => !live.has(c.id))) {
				await this.transaction(t => this.storeCategory({ categoryId: gone.id, slug: gone.slug, name: gone.name, parentId: null, updatedAt: new Date().toISOString() }, true, t));
			}
			const bySlug = new Map(categories.items.map(c => [c.categoryId, c]));
			let page = 1;
			let indexed = 0;
			for (;;) {
				const res: any = await ctx.call("catalog.list", { page, pageSize: 100 });
				for (const p of res.items) {
					const cat = bySlug.get(p.categoryId);
					const snapshot: ProductSnapshot = {
						productId: p.id,
						sku: p.sku,
						name: p.name,
						description: p.description ?? "",
						brand: p.brand,
						categoryId: p.categoryId,
						categorySlug: cat?.slug ?? "",
						categoryName: cat?.name ?? "",
						price: p.price,
						status: "active",
						attributes: p.attributes ?? {},
						createdAt: p.createdAt ?? new Date(0).toISOString(),
						updatedAt: p.updatedAt ?? new Date().toISOString(),
						weightGrams: p.weightGrams ?? 0,
						rating: p.rating ?? null,
					};
					await this.transaction(t => this.storeProduct(snapshot, t));
					indexed++;
				}
				if (page * 100 >= res.total || !res.items.length) break;
				page++;
			}
			return indexed;
		},
	},

	async started(this: Svc) {
		this.index = new ProductSearchIndex();
		this.categories = new Map();
		this.appliedDocs = new Map();
		this.stock = new Map();
		this.ratings = new Map();
		this.lastPoll = new Date(0);
		await this.followTable();
		this.pollTimer = setInterval(() => {
			this.followTable().catch((err: Error) => this.logger.warn("Search index refresh failed; retrying", err.message));
		}, this.settings.pollIntervalMs);
		this.pollTimer.unref();
		// A category tree this index has never heard of (it predates category events) comes from the catalog.
		if (this.categories.size === 0) {
			this.fillCategories().catch((err: Error) => this.logger.info(`Categories not loaded from the catalog (${err.message}); events will bring them`));
		}
		// A fresh index of an existing catalog (embedded first start, new cluster) fills itself.
		if (this.index.size === 0 && config().SEED_DEMO) {
			this.broker
				.waitForServices(["catalog"], 30_000)
				.then(() => this.rebuildFromCatalog(this.broker.ContextFactory.create(this.broker, null as any, {}, {})))
				.then((n: number) => n && this.logger.info(`Search index built from the catalog: ${n} products`))
				.catch((err: Error) => this.logger.warn("Initial reindex from the catalog failed", err.message));
		}
	},

	stopped(this: Svc) {
		if (this.pollTimer) clearInterval(this.pollTimer);
		this.pollTimer = undefined;
	},
};

export default SearchService;
