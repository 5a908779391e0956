/**
 * Cart: one per customer, persisted, quantities 1..99, always shown at the catalog's current
 * prices (lib/cart/pricing); products no longer on sale drop out of it. Cleared when the
 * customer's order is confirmed.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, Op, type Transaction } from "sequelize";
import { type CartLine, MAX_LINES, MAX_QUANTITY, type CatalogProduct, priceCart, sellableLines } from "../../lib/cart/pricing";
import { forgetUser } from "../../lib/cache";
import { productsById } from "../../lib/catalog/products-by-id";
import { ConflictError, NotFoundError, UnprocessableError } from "../../lib/errors";
import type { Params, Part } from "../../lib/db/sql";
import { checkOrderTotal } from "../../lib/money";
import type { DomainEvent } from "../../lib/events";
import { AccessMixin, type Meta, callerOf } from "../../mixins/access.mixin";
import { ConsumerMixin, inboxMigrations } from "../../mixins/consumer.mixin";
import { DbMixin, type DbMethods, type Migration } from "../../mixins/db.mixin";

/** How long a cart answer is cached (s): the backstop should a clean be missed (lib/cache.ts). */
const CART_CACHE_TTL_S = 10;
/** The actions that change a cart (Moleculer hook names, `|`-separated). */
const CART_CHANGES = "addItem|setQuantity|removeItem|clear|clearFor";

const migrations: Migration[] = [
	{
		name: "001-cart",
		async up(qi, T) {
			// The composite primary key is the unique (customer_id, product_id): one line per product.
			await qi.createTable("cart_items", {
				customer_id: { type: T.STRING(36), primaryKey: true },
				product_id: { type: T.STRING(36), primaryKey: true },
				quantity: { type: T.INTEGER, allowNull: false },
				added_at: { type: T.DATE(3), allowNull: false },
			});
		},
	},
	{
		// When the line's quantity last changed: the clear on confirmation keeps a line the customer
		// changed after the order was confirmed (issue 7 adversary F3). Null on lines from before.
		name: "002-cart-changed-at",
		async up(qi, T) {
			await qi.addColumn("cart_items", "changed_at", { type: T.DATE(3), allowNull: true });
		},
	},
	...inboxMigrations,
];

type Svc = Service & DbMethods & { [k: string]: any };
type Ctx<P = unknown> = Context<P, Meta & { $statusCode?: number }>;

const productId = "string|min:1|max:36";
const CATALOG_TIMEOUT_MS = 3000;

const tooMany = (quantity: number) =>
	new UnprocessableError(`At most ${MAX_QUANTITY} of one product`, "VALIDATION_ERROR", [{ field: "quantity", message: `the cart would hold ${quantity}; at most ${MAX_QUANTITY}` }]);

const CartService: ServiceSchema<any, any, any, Svc> = {
	name: "cart",
	mixins: [
		DbMixin({
			name: "cart",
			migrations,
			models: s => ({
				Item: s.define(
					"CartItem",
					{ customer_id: { type: DataTypes.STRING(36), primaryKey: true }, product_id: { type: DataTypes.STRING(36), primaryKey: true }, quantity: DataTypes.INTEGER, added_at: DataTypes.DATE(3), changed_at: DataTypes.DATE(3) },
					{ tableName: "cart_items", timestamps: false },
				),
			}),
		}),
		ConsumerMixin,
		AccessMixin,
	],

	hooks: {
		// A changed cart is cleaned from the read cache on every node before the change answers, also when it failed halfway.
		after: {
			[CART_CHANGES](this: Svc, ctx: Ctx<{ customerId?: string }>, res: unknown) {
				return forgetUser(this.broker, "cart.get", ctx.params?.customerId ?? callerOf(ctx).id).then(() => res);
			},
		},
		error: {
			[CART_CHANGES](this: Svc, ctx: Ctx<{ customerId?: string }>, err: Error) {
				return forgetUser(this.broker, "cart.get", ctx.params?.customerId ?? callerOf(ctx).id).then(() => {
					throw err;
				});
			},
		},
	},

	actions: {
		get: {
			auth: "customer",
			// Cached per customer (lib/cache.ts), briefly: cleaned after every change of the cart
			// (the hooks below, the order confirmation) and by catalog.product.* (names, prices, status).
			cache: { ttl: CART_CACHE_TTL_S, byUser: true } as any,
			handler(this: Svc, ctx: Ctx) {
				return this.view(ctx, callerOf(ctx).id);
			},
		},

		addItem: {
			auth: "customer",
			params: { productId, quantity: `number|integer|min:1|max:${MAX_QUANTITY}` },
			async handler(this: Svc, ctx: Ctx<{ productId: string; quantity: number }>) {
				const customerId = callerOf(ctx).id;
				const product = await this.checkWithinLimit(ctx, customerId, ctx.params.productId, (held: number) => held + ctx.params.quantity);
				if (product?.status !== "active") throw new NotFoundError("Product", "PRODUCT_NOT_FOUND");
				for (let attempt = 1; ; attempt++) {
					try {
						if (await this.transaction((t: Transaction) => this.addQuantity(t, customerId, ctx.params.productId, ctx.params.quantity))) break;
					} catch (err) {
						if (!this.isUniqueViolation(err)) throw err;
					}
					// A concurrent first add of this product made the line meanwhile: add to it now.
					if (attempt >= 3) throw new ConflictError("The cart changed meanwhile; try again", "CART_CHANGED");
				}
				return this.view(ctx, customerId);
			},
		},

		setQuantity: {
			auth: "customer",
			params: { productId, quantity: `number|integer|min:0|max:${MAX_QUANTITY}` },
			async handler(this: Svc, ctx: Ctx<{ productId: string; quantity: number }>) {
				const customerId = callerOf(ctx).id;
				const where = { customer_id: customerId, product_id: ctx.params.productId };
				if (ctx.params.quantity > 0) await this.checkWithinLimit(ctx, customerId, ctx.params.productId, () => ctx.params.quantity);
				if (ctx.params.quantity === 0) await this.models.Item.destroy({ where });
				else {
					const [n] = await this.models.Item.update({ quantity: ctx.params.quantity, changed_at: new Date() }, { where });
					if (!n) throw new NotFoundError("Cart item", "CART_ITEM_NOT_FOUND");
				}
				return this.view(ctx, customerId);
			},
		},

		removeItem: {
			auth: "customer",
			params: { productId },
			async handler(this: Svc, ctx: Ctx<{ productId: string }>) {
				const customerId = callerOf(ctx).id;
				await this.models.Item.destroy({ where: { customer_id: customerId, product_id: ctx.params.productId } });
				return this.view(ctx, customerId);
			},
		},

		clear: {
			auth: "customer",
			async handler(this: Svc, ctx: Ctx) {
				await this.models.Item.destroy({ where: { customer_id: callerOf(ctx).id } });
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		/** Internal (orders, shipping): what the customer would check out — the lines still on sale, as the cart shows them. */
		getForCheckout: {
			params: { customerId: "string|min:1|max:36" },
			async handler(this: Svc, ctx: Context<{ customerId: string }>) {
				const lines: CartLine[] = await this.lines(ctx.params.customerId);
				const sellable = sellableLines(lines, await this.products(ctx, lines.map(l => l.productId)));
				return { items: sellable.map(({ line }) => ({ productId: line.productId, quantity: line.quantity })) };
			},
		},

		clearFor: {
			params: { customerId: "string|min:1|max:36" },
			async handler(this: Svc, ctx: Context<{ customerId: string }>) {
				return { removed: await this.models.Item.destroy({ where: { customer_id: ctx.params.customerId } }) };
			},
		},
	},

	subscriptions: {
		/**
		 * The cart empties once the customer's order is confirmed (lib/cart/confirmation.ts): of the
		 * lines put in or last changed no later than the confirmation, so a late or repeated event
		 * never takes away what the customer added or changed since.
		 */
		"orders.order.confirmed": {
			// One statement with the inbox claim (mixins/consumer.mixin.ts): this runs once per checkout.
			parts(this: Svc, e: DomainEvent<"orders.order.confirmed">, p: Params): Part[] {
				// lib/cart/confirmation.ts clearedBy: a line last changed after the confirmation stays.
				return [{ name: "removed", sql: `DELETE FROM cart_items WHERE customer_id = ${p.text(e.customerId)} AND COALESCE(changed_at, added_at) <= ${p.ts(new Date(e.occurredAt))} AND {guard} RETURNING product_id` }];
			},
			// An order placed without the cart changed nothing: no cache to clean.
			committed(this: Svc, e: DomainEvent<"orders.order.confirmed">, rows: Record<string, any[]>) {
				if (rows.removed.length) void forgetUser(this.broker, "cart.get", e.customerId);
			},
		},
	},

	methods: {
		/**
		 * Adds to the line in one conditional update, or starts it; never beyond MAX_QUANTITY or
		 * MAX_LINES. False when the line appeared between the two (the caller tries again).
		 */
		async addQuantity(this: Svc, t: Transaction, customerId: string, product: string, quantity: number): Promise<boolean> {
			const where = { customer_id: customerId, product_id: product };
			const [n] = await this.models.Item.update(
				{ quantity: this.sequelize.literal(`quantity + ${Math.trunc(quantity)}`), changed_at: new Date() },
				{ where: { ...where, quantity: { [Op.lte]: MAX_QUANTITY - quantity } }, transaction: t },
			);
			if (n) return true;
			const existing: any = await this.models.Item.findOne({ where, transaction: t, raw: true });
			if (existing) {
				if (existing.quantity + quantity > MAX_QUANTITY) throw tooMany(existing.quantity + quantity);
				return false;
			}
			if ((await this.models.Item.count({ where: { customer_id: customerId }, transaction: t })) >= MAX_LINES) {
				throw new ConflictError(`A cart holds at most ${MAX_LINES} different products`, "CART_FULL");
			}
			const now = new Date();
			await this.models.Item.create({ ...where, quantity, added_at: now, changed_at: now }, { transaction: t });
			return true;
		},

		/**
		 * Refuses (422 ORDER_TOO_LARGE) a change after which the cart's subtotal would pass the
		 * largest order the platform takes (lib/money.ts); `quantityOf` gives the product's new
		 * quantity from the one held. Answers the product as the catalog has it (undefined if unknown).
		 * Two concurrent changes may both pass; checkout checks the total again.
		 */
		async checkWithinLimit(this: Svc, ctx: Context, customerId: string, productId: string, quantityOf: (held: number) => number): Promise<CatalogProduct | undefined> {
			const lines: CartLine[] = await this.lines(customerId);
			const products: CatalogProduct[] = await this.products(ctx, [...new Set([...lines.map(l => l.productId), productId])]);
			const product = products.find(p => p.id === productId);
			if (product?.status !== "active") return product;
			const held = lines.find(l => l.productId === productId)?.quantity ?? 0;
			const others = priceCart(lines.filter(l => l.productId !== productId), products).subtotal.amount;
			checkOrderTotal(others + product.price.amount * quantityOf(held), "quantity");
			return product;
		},

		async lines(this: Svc, customerId: string): Promise<CartLine[]> {
			const rows: any[] = await this.models.Item.findAll({ where: { customer_id: customerId }, order: [["added_at", "ASC"], ["product_id", "ASC"]], raw: true });
			return rows.map(r => ({ productId: r.product_id, quantity: r.quantity }));
		},

		async products(this: Svc, ctx: Context, ids: string[]): Promise<CatalogProduct[]> {
			return productsById<CatalogProduct>(ctx, ids, { timeout: CATALOG_TIMEOUT_MS });
		},

		async view(this: Svc, ctx: Context, customerId: string) {
			const lines: CartLine[] = await this.lines(customerId);
			return priceCart(lines, await this.products(ctx, lines.map(l => l.productId)));
		},
	},
};

export default CartService;
