/**
 * Reviews: only customers with a delivered order containing the product may review it, once.
 * Automatic moderation publishes or holds a review; admins approve or reject held ones.
 * Published reviews move the product's rating summary (event reviews.review.published).
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, Op, type Transaction } from "sequelize";
import { AccessMixin, callerOf } from "../../mixins/access.mixin";
import { ConsumerMixin, inboxMigrations } from "../../mixins/consumer.mixin";
import { DbMixin, type DbMethods, type Migration, jsonColumn } from "../../mixins/db.mixin";
import { OutboxMixin, type OutboxMethods, outboxMigrations } from "../../mixins/outbox.mixin";
import { clampPaging } from "../../lib/paging";
import type { DomainEvent } from "../../lib/events";
import { DEFAULT_CACHE_TTL_S } from "../../lib/cache";
import { ConflictError, ForbiddenError, NotFoundError } from "../../lib/errors";
import { creditedOrder, eligibilitiesOf } from "../../lib/reviews/eligibility";
import { addRating, moderate } from "../../lib/reviews/moderation";
import { singleLine } from "../../lib/text";

const migrations: Migration[] = [
	{
		name: "001-reviews",
		async up(qi, T) {
			await qi.createTable("reviews", {
				id: { type: T.STRING(36), primaryKey: true },
				product_id: { type: T.STRING(36), allowNull: false },
				customer_id: { type: T.STRING(36), allowNull: false },
				author_name: { type: T.STRING(120), allowNull: false },
				rating: { type: T.INTEGER, allowNull: false },
				title: { type: T.STRING(120), allowNull: false },
				body: { type: T.TEXT, allowNull: false },
				status: { type: T.STRING(16), allowNull: false },
				moderation_reasons: { type: T.JSON, allowNull: false },
				created_at: { type: T.DATE, allowNull: false },
				updated_at: { type: T.DATE, allowNull: false },
			});
			// One review per customer and product, decided by the database.
			await qi.addIndex("reviews", ["customer_id", "product_id"], { unique: true, name: "reviews_customer_product_uq" });
			await qi.addIndex("reviews", ["product_id", "status", "created_at"]);
			await qi.createTable("review_eligibility", {
				customer_id: { type: T.STRING(36), allowNull: false, primaryKey: true },
				product_id: { type: T.STRING(36), allowNull: false, primaryKey: true },
				order_id: { type: T.STRING(36), allowNull: false },
			});
			await qi.createTable("rating_summaries", {
				product_id: { type: T.STRING(36), primaryKey: true },
				average: { type: T.FLOAT, allowNull: false },
				count: { type: T.INTEGER, allowNull: false },
			});
		},
	},
	...outboxMigrations,
	...inboxMigrations,
	{
		// The moderation queue reads reviews by status, oldest first.
		name: "i11-001-reviews-status-index",
		async up(qi) {
			await qi.addIndex("reviews", ["status", "created_at"], { name: "reviews_status_created" });
		},
	},
];

type Svc = Service & DbMethods & OutboxMethods & { [k: string]: any };

function publicReview(r: any) {
	return {
		id: r.id,
		rating: r.rating,
		title: r.title,
		body: r.body,
		authorName: r.author_name,
		verifiedPurchase: true,
		createdAt: new Date(r.created_at).toISOString(),
	};
}

const ReviewsService: ServiceSchema<any, any, any, Svc> = {
	name: "reviews",
	mixins: [
		DbMixin({
			name: "reviews",
			migrations,
			models: s => ({
				Review: s.define(
					"Review",
					{
						id: { type: DataTypes.STRING(36), primaryKey: true },
						product_id: DataTypes.STRING(36),
						customer_id: DataTypes.STRING(36),
						author_name: DataTypes.STRING(120),
						rating: DataTypes.INTEGER,
						title: DataTypes.STRING(120),
						body: DataTypes.TEXT,
						status: DataTypes.STRING(16),
						moderation_reasons: DataTypes.JSON,
						created_at: DataTypes.DATE,
						updated_at: DataTypes.DATE,
					},
					{ tableName: "reviews", timestamps: false },
				),
				Eligibility: s.define(
					"ReviewEligibility",
					{ customer_id: { type: DataTypes.STRING(36), primaryKey: true }, product_id: { type: DataTypes.STRING(36), primaryKey: true }, order_id: DataTypes.STRING(36) },
					{ tableName: "review_eligibility", timestamps: false },
				),
				Summary: s.define(
					"RatingSummary",
					{ product_id: { type: DataTypes.STRING(36), primaryKey: true }, average: DataTypes.FLOAT, count: DataTypes.INTEGER },
					{ tableName: "rating_summaries", timestamps: false },
				),
			}),
		}),
		OutboxMixin,
		ConsumerMixin,
		AccessMixin,
	],

	actions: {
		list: {
			auth: "public",
			params: { id: "string|max:64", page: "number|integer|convert|optional", pageSize: "number|integer|convert|optional" },
			async handler(this: Svc, ctx: Context<{ id: string; page?: number; pageSize?: number }>) {
				const { page, pageSize, offset } = clampPaging(ctx.params.page, ctx.params.pageSize);
				const { rows, count } = await this.models.Review.findAndCountAll({
					where: { product_id: ctx.params.id, status: "PUBLISHED" },
					order: [["created_at", "DESC"], ["id", "ASC"]],
					limit: pageSize,
					offset,
					raw: true,
				});
				return { items: rows.map(publicReview), total: count, page, pageSize };
			},
		},

		submit: {
			auth: "customer",
			params: {
				id: "string|max:64",
				rating: "number|integer|min:1|max:5",
				title: singleLine(1, 120),
				body: "string|trim|min:1|max:5000",
			},
			async handler(this: Svc, ctx: Context<{ id: string; rating: number; title: string; body: string }, any>) {
				const customer = callerOf(ctx);
				const { id: productId, rating, title, body } = ctx.params;
				const eligible = await this.models.Eligibility.findOne({ where: { customer_id: customer.id, product_id: productId } });
				if (!eligible && !(await this.eligibleFromOrders(ctx, customer.id, productId))) throw new ForbiddenError("Only customers with a delivered order containing this product may review it", "NOT_A_BUYER");
				const authorName = await this.authorName(ctx);
				const decision = moderate({ title, body });
				const now = new Date();
				const review = { id: randomUUID(), product_id: productId, customer_id: customer.id, author_name: authorName, rating, title, body, status: decision.status, moderation_reasons: decision.reasons, created_at: now, updated_at: now };
				try {
					await this.transaction(async (t: Transaction) => {
						await this.models.Review.create(review, { transaction: t });
						if (decision.status === "PUBLISHED") await this.publish(review, t);
					});
				} catch (err) {
					if (this.isUniqueViolation(err)) throw new ConflictError("You have already reviewed this product", "ALREADY_REVIEWED");
					throw err;
				}
				ctx.meta.$statusCode = 201;
				return { id: review.id, status: review.status };
			},
		},

		/** The moderation queue (API.md `GET /admin/reviews?status=`): reviews in one status, oldest first, with their product. */
		moderationQueue: {
			auth: "admin",
			roles: ["support"],
			params: {
				status: { type: "enum", values: ["PENDING", "PUBLISHED", "REJECTED"], default: "PENDING" },
				page: "number|integer|min:1|max:100000|convert|optional",
				pageSize: "number|integer|min:1|max:100|convert|optional",
			},
			async handler(this: Svc, ctx: Context<{ status: string; page?: number; pageSize?: number }>) {
				const { page, pageSize, offset } = clampPaging(ctx.params.page, ctx.params.pageSize);
				const { rows, count } = await this.models.Review.findAndCountAll({ where: { status: ctx.params.status }, order: [["created_at", "ASC"], ["id", "ASC"]], limit: pageSize, offset, raw: true });
				return { items: rows.map((r: any) => ({ ...publicReview(r), status: r.status, productId: r.product_id, moderationReasons: jsonColumn<string[]>(r.moderation_reasons, []) })), total: count, page, pageSize };
			},
		},

		approve: {
			auth: "admin",
			roles: ["support"],
			params: { id: "string|max:64" },
			handler(this: Svc, ctx: Context<{ id: string }>) {
				return this.moderateHeld(ctx.params.id, "PUBLISHED");
			},
		},

		reject: {
			auth: "admin",
			roles: ["support"],
			params: { id: "string|max:64" },
			handler(this: Svc, ctx: Context<{ id: string }>) {
				return this.moderateHeld(ctx.params.id, "REJECTED");
			},
		},

		/** Rating summary of a product (read by catalog.get). */
		summary: {
			// Cached (lib/cache.ts): cleaned by reviews.review.published.
			cache: { ttl: DEFAULT_CACHE_TTL_S },
			params: { productId: "string|max:64" },
			async handler(this: Svc, ctx: Context<{ productId: string }>) {
				const s: any = await this.models.Summary.findByPk(ctx.params.productId, { raw: true });
				return { average: s?.average ?? 0, count: s?.count ?? 0 };
			},
		},
	},

	subscriptions: {
		/** A delivered order makes its customer eligible to review each of its products. */
		async "orders.order.delivered"(this: Svc, e: DomainEvent<"orders.order.delivered">, t: Transaction) {
			// Converges (lib/reviews/eligibility.ts): one row per product, credited to the smallest order id whatever arrives first.
			for (const el of eligibilitiesOf(e)) {
				const [row, created] = await this.models.Eligibility.findOrCreate({
					where: { customer_id: el.customerId, product_id: el.productId },
					defaults: { customer_id: el.customerId, product_id: el.productId, order_id: el.orderId },
					transaction: t,
				});
				const held = (row as any).get?.("order_id") ?? (row as any).order_id;
				if (!created && creditedOrder(held, el.orderId) !== held) {
					await this.models.Eligibility.update({ order_id: el.orderId }, { where: { customer_id: el.customerId, product_id: el.productId, order_id: { [Op.gt]: el.orderId } }, transaction: t });
				}
			}
		},
	},

	methods: {
		/**
		 * Read-your-writes for reviews (issue 8): no eligibility yet may only mean that the delivery's
		 * event has not arrived; orders, which owns the truth, is asked, and a yes is recorded as the
		 * event would record it (lib/reviews/eligibility.ts). Orders unavailable: not eligible (yet).
		 */
		async eligibleFromOrders(this: Svc, ctx: Context, customerId: string, productId: string): Promise<boolean> {
			let orderId: string | null;
			try {
				({ orderId } = (await ctx.call("orders.deliveredContaining", { customerId, productId }, { timeout: 2000, retries: 0 })) as { orderId: string | null });
			} catch (err) {
				this.logger.warn("Orders could not say whether the customer has a delivered order; not eligible for now", { customerId, productId, error: (err as Error).message });
				return false;
			}
			if (!orderId) return false;
			await this.models.Eligibility.findOrCreate({ where: { customer_id: customerId, product_id: productId }, defaults: { customer_id: customerId, product_id: productId, order_id: orderId } });
			return true;
		},

		/** "Ada L." from the customer's profile; a plain label when the profile cannot be read. */
		async authorName(this: Svc, ctx: Context<unknown, any>): Promise<string> {
			try {
				const me: any = await ctx.call("customers.me", {}, { timeout: 1000 });
				return `${me.firstName} ${String(me.lastName ?? "").slice(0, 1)}.`.trim();
			} catch (err) {
				this.logger.warn("Customer profile unavailable for review author name", (err as Error).message);
				return "Verified buyer";
			}
		},

		/** Adds a published review to its product's summary and records the event, in one transaction. */
		async publish(this: Svc, review: { id: string; product_id: string; rating: number }, t: Transaction) {
			const current: any = await this.models.Summary.findByPk(review.product_id, { transaction: t, lock: t.LOCK.UPDATE });
			const summary = addRating({ average: current?.average ?? 0, count: current?.count ?? 0 }, review.rating);
			await this.models.Summary.upsert({ product_id: review.product_id, ...summary }, { transaction: t });
			await this.recordEvent(t, "reviews.review.published", { reviewId: review.id, productId: review.product_id, rating: review.rating, summary });
		},

		/** PENDING → PUBLISHED or REJECTED, once: a conditional update decides between concurrent admins. */
		async moderateHeld(this: Svc, id: string, to: "PUBLISHED" | "REJECTED") {
			return this.transaction(async (t: Transaction) => {
				const [changed] = await this.models.Review.update({ status: to, updated_at: new Date() }, { where: { id, status: "PENDING" }, transaction: t });
				const review: any = await this.models.Review.findByPk(id, { transaction: t, raw: true });
				if (!review) throw new NotFoundError("Review", "REVIEW_NOT_FOUND");
				if (!changed) throw new ConflictError(`Review is ${review.status}, not PENDING`, "NOT_PENDING");
				if (to === "PUBLISHED") await this.publish(review, t);
				return { ...publicReview(review), status: review.status, productId: review.product_id };
			});
		},
	},
};

export default ReviewsService;

