/**
 * Bulk catalogue actions of the catalog service, internal (called by `npm run import` /
 * `npm run export` and the REPL's catalog-import / catalog-export, which join the cluster):
 *
 * - `importProducts({ rows: [{ line, product }], dryRun? })`: upsert by SKU (any case), one
 *   transaction and a handful of statements per batch, one catalog.product.* event per product
 *   that changed, and an answer per row — created, updated, unchanged or refused with a reason —
 *   so one bad row never stops the others.
 * - `exportProducts({ after?, limit? })`: every product that is not archived, in SKU order, a
 *   page at a time, with its category's slug.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { Op, Sequelize, type Transaction } from "sequelize";
import { type ImportedProduct, type ProductCheck, planRow } from "../../lib/catalog/bulk";
import { type ProductRecord, createParams, newProductRecord, productChanges, productSnapshot, productView } from "../../lib/catalog/product";
import type { DbMethods } from "../../mixins/db.mixin";
import type { OutboxMethods, RecordedEvent } from "../../mixins/outbox.mixin";
import { productRecord } from "./catalog-rows";

type Svc = Service & DbMethods & OutboxMethods & { productCheck: ProductCheck; [k: string]: any };

export interface ImportRow {
	/** The row's line in the file, echoed in its result. */
	line: number;
	product: ImportedProduct;
}

export type RowResult = { line: number; sku: string; result: "created" | "updated" | "unchanged" } | { line: number; sku: string; result: "refused"; reason: string };

/** A batch that met a SKU created meanwhile (another import, a POST /products) is planned again, this many times at most. */
const ATTEMPTS = 3;

const schema: Partial<ServiceSchema<any, any, any, Svc>> = {
	actions: {
		importProducts: {
			params: {
				rows: { type: "array", max: 1000, items: { type: "object", props: { line: "number|integer|min:0", product: { type: "object", props: { sku: "string|max:200" } } } } },
				dryRun: "boolean|optional",
			},
			async handler(this: Svc, ctx: Context<{ rows: ImportRow[]; dryRun?: boolean }>) {
				for (let attempt = 1; ; attempt++) {
					try {
						return { results: await this.importBatch(ctx.params.rows, ctx.params.dryRun === true) };
					} catch (err) {
						if (!this.isUniqueViolation(err) || attempt >= ATTEMPTS) throw err;
						this.logger.info("Import batch met a SKU created meanwhile; planning it again");
					}
				}
			},
		},

		exportProducts: {
			params: { after: "string|max:200|optional", limit: "number|integer|min:1|max:1000|optional" },
			async handler(this: Svc, ctx: Context<{ after?: string; limit?: number }>) {
				const limit = ctx.params.limit ?? 500;
				const where = { status: { [Op.ne]: "archived" }, ...(ctx.params.after !== undefined && { sku: { [Op.gt]: ctx.params.after } }) };
				const rows: any[] = await this.models.Product.findAll({ where, order: [["sku", "ASC"]], limit, raw: true });
				const slugs = new Map<string, string>(((await this.models.Category.findAll({ attributes: ["id", "slug"], raw: true })) as any[]).map(c => [c.id, c.slug]));
				return {
					items: rows.map(r => ({ ...productView(productRecord(r)), categorySlug: slugs.get(r.category_id) ?? "" })),
					next: rows.length === limit ? rows[rows.length - 1].sku : null,
				};
			},
		},
	},

	methods: {
		/** Plans every row (lib/catalog/bulk.planRow), then writes the batch in one transaction — or, in a dry run, nothing. */
		async importBatch(this: Svc, rows: ImportRow[], dryRun: boolean): Promise<RowResult[]> {
			const plan = async (t?: Transaction) => {
				const now = new Date();
				const slugs = [...new Set(rows.map(r => r.product.category).filter((s): s is string => typeof s === "string"))];
				// Locked FOR SHARE to the commit: a category being deleted meanwhile waits, then sees these products.
				const categories: any[] = await this.models.Category.findAll({ where: { slug: { [Op.in]: slugs } }, transaction: t, ...(t && { lock: t.LOCK.SHARE }), raw: true });
				const bySlug = new Map(categories.map(c => [c.slug, c]));
				const byId = new Map(categories.map(c => [c.id, c]));
				const keys = [...new Set(rows.map(r => r.product.sku.toLowerCase()))];
				// SKUs are unique regardless of case (API.md): a row updates the product whatever case it was stored in.
				const found: any[] = await this.models.Product.findAll({ where: Sequelize.where(Sequelize.fn("lower", Sequelize.col("sku")), { [Op.in]: keys }), transaction: t, ...(t && { lock: t.LOCK.UPDATE }), raw: true });
				const existing = new Map<string, ProductRecord>(found.map(r => [String(r.sku).toLowerCase(), productRecord(r)]));

				const results: RowResult[] = [];
				const creates: ProductRecord[] = [];
				const updates: { id: string; changes: Partial<ProductRecord> }[] = [];
				const events: RecordedEvent[] = [];
				const firstLine = new Map<string, number>();
				for (const { line, product } of rows) {
					const sku = product.sku;
					const refuse = (reason: string) => results.push({ line, sku, result: "refused", reason });
					const key = sku.toLowerCase();
					if (firstLine.has(key)) {
						refuse(`duplicate SKU: already on line ${firstLine.get(key)}`);
						continue;
					}
					firstLine.set(key, line);
					const category = bySlug.get(product.category);
					if (!category) {
						refuse(`unknown category "${product.category ?? ""}"`);
						continue;
					}
					const current = existing.get(key);
					const p = planRow(product, current, category.id, this.productCheck);
					if (p.kind === "refused") {
						refuse(p.reason);
					} else if (p.kind === "create") {
						const created = newProductRecord(p.input, randomUUID(), now);
						creates.push(created);
						events.push({ name: "catalog.product.created", payload: productSnapshot(created, category) });
						results.push({ line, sku, result: "created" });
					} else if (p.kind === "update") {
						const changes = productChanges(p.patch, now);
						const updated = { ...current!, ...changes };
						updates.push({ id: current!.id, changes });
						events.push({ name: "catalog.product.updated", payload: productSnapshot(updated, byId.get(updated.category_id)) });
						results.push({ line, sku: current!.sku, result: "updated" });
					} else {
						results.push({ line, sku: current!.sku, result: "unchanged" });
					}
				}
				if (t) {
					if (creates.length) await this.models.Product.bulkCreate(creates.map(c => ({ ...c })), { transaction: t });
					for (const u of updates) await this.models.Product.update(u.changes, { where: { id: u.id }, transaction: t });
					await this.recordEvents(t, events);
				}
				return results;
			};
			return dryRun ? plan() : this.transaction(plan);
		},
	},

	created(this: Svc) {
		// The create rules of POST /products, compiled once, applied to every imported row.
		this.productCheck = this.broker.validator!.compile({ ...createParams }) as unknown as ProductCheck;
	},
};

/** Typed against the catalog service it is mixed into; the broker sees an ordinary partial schema. */
export const CatalogBulkMixin = schema as unknown as Partial<ServiceSchema>;
