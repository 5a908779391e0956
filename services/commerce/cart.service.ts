/**
 * Cart: one per customer, persisted, quantities 1..99, always shown at the catalog's current
 * prices. Cleared when the customer's order is confirmed.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, type Transaction } from "sequelize";
import { NotFoundError, UnprocessableError } from "../../lib/errors";
import type { DomainEvent } from "../../lib/events";
import { AccessMixin, type Meta, callerOf } from "../../mixins/access.mixin";
import { ConsumerMixin, inboxMigrations } from "../../mixins/consumer.mixin";
import { DbMixin, type DbMethods, type Migration } from "../../mixins/db.mixin";

const MAX_QTY = 99;

const migrations: Migration[] = [
	{
		name: "001-cart",
		async up(qi, T) {
			await qi.createTable("cart_items", {
				customer_id: { type: T.STRING(36), primaryKey: true },
				product_id: { type: T.STRING(36), primaryKey: true },
				quantity: { type: T.INTEGER, allowNull: false },
				added_at: { type: T.DATE(3), allowNull: false },
			});
		},
	},
	...inboxMigrations,
];

type Svc = Service & DbMethods & { [k: string]: any };
type Ctx<P = unknown> = Context<P, Meta & { $statusCode?: number }>;

const CartService: ServiceSchema<any, any, any, Svc> = {
	name: "cart",
	mixins: [
		DbMixin({
			name: "cart",
			migrations,
			models: s => ({
				Item: s.define("CartItem", { customer_id: { type: DataTypes.STRING(36), primaryKey: true }, product_id: { type: DataTypes.STRING(36), primaryKey: true }, quantity: DataTypes.INTEGER, added_at: DataTypes.DATE(3) }, { tableName: "cart_items", timestamps: false }),
			}),
		}),
		ConsumerMixin,
		AccessMixin,
	],

	actions: {
		get: {
			auth: "customer",
			handler(this: Svc, ctx: Ctx) {
				return this.view(ctx, callerOf(ctx).id);
			},
		},

		addItem: {
			auth: "customer",
			params: { productId: "string|max:36", quantity: `number|integer|min:1|max:${MAX_QTY}` },
			async handler(this: Svc, ctx: Ctx<{ productId: string; quantity: number }>) {
				const customerId = callerOf(ctx).id;
				await this.requireProduct(ctx, ctx.params.productId);
				await this.transaction(async (t: Transaction) => {
					const existing: any = await this.models.Item.findOne({ where: { customer_id: customerId, product_id: ctx.params.productId }, transaction: t, raw: true });
					const quantity = (existing?.quantity ?? 0) + ctx.params.quantity;
					if (quantity > MAX_QTY) throw new UnprocessableError(`At most ${MAX_QTY} of one product`, "VALIDATION_ERROR", [{ field: "quantity", message: `cart would hold ${quantity}, at most ${MAX_QTY}` }]);
					await this.models.Item.upsert({ customer_id: customerId, product_id: ctx.params.productId, quantity, added_at: existing?.added_at ?? new Date() }, { transaction: t });
				});
				return this.view(ctx, customerId);
			},
		},

		setQuantity: {
			auth: "customer",
			params: { productId: "string|max:36", quantity: `number|integer|min:0|max:${MAX_QTY}` },
			async handler(this: Svc, ctx: Ctx<{ productId: string; quantity: number }>) {
				const customerId = callerOf(ctx).id;
				const where = { customer_id: customerId, product_id: ctx.params.productId };
				if (ctx.params.quantity === 0) await this.models.Item.destroy({ where });
				else {
					const [n] = await this.models.Item.update({ quantity: ctx.params.quantity }, { where });
					if (!n) throw new NotFoundError("Cart item", "CART_ITEM_NOT_FOUND");
				}
				return this.view(ctx, customerId);
			},
		},

		removeItem: {
			auth: "customer",
			params: { productId: "string|max:36" },
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

		getForCheckout: {
			params: { customerId: "string|max:36" },
			async handler(this: Svc, ctx: Context<{ customerId: string }>) {
				const rows: any[] = await this.models.Item.findAll({ where: { customer_id: ctx.params.customerId }, order: [["added_at", "ASC"]], raw: true });
				return { items: rows.map(r => ({ productId: r.product_id, quantity: r.quantity })) };
			},
		},

		clearFor: {
			params: { customerId: "string|max:36" },
			async handler(this: Svc, ctx: Context<{ customerId: string }>) {
				return { removed: await this.models.Item.destroy({ where: { customer_id: ctx.params.customerId } }) };
			},
		},
	},

	subscriptions: {
		/** What was ordered leaves the cart once the order is confirmed. */
		async "orders.order.confirmed"(this: Svc, e: DomainEvent<"orders.order.confirmed">, t: Transaction) {
			for (const item of e.items) await this.models.Item.destroy({ where: { customer_id: e.customerId, product_id: item.productId }, transaction: t });
		},
	},

	methods: {
		async requireProduct(this: Svc, ctx: Context, productId: string) {
			const [p]: any[] = await ctx.call("catalog.getMany", { ids: [productId] });
			if (!p || p.status !== "active") throw new NotFoundError("Product", "PRODUCT_NOT_FOUND");
		},

		/** The cart at today's catalog prices; products no longer sold drop out of the view. */
		async view(this: Svc, ctx: Context, customerId: string) {
			const rows: any[] = await this.models.Item.findAll({ where: { customer_id: customerId }, order: [["added_at", "ASC"]], raw: true });
			const products: any[] = rows.length ? await ctx.call("catalog.getMany", { ids: rows.map(r => r.product_id) }) : [];
			const items = rows
				.map(r => ({ r, p: products.find(p => p.id === r.product_id && p.status === "active") }))
				.filter(x => x.p)
				.map(({ r, p }) => ({ productId: p.id, name: p.name, unitPrice: p.price, quantity: r.quantity, lineTotal: { amount: p.price.amount * r.quantity, currency: p.price.currency } }));
			return {
				items,
				subtotal: { amount: items.reduce((n, i) => n + i.lineTotal.amount, 0), currency: "USD" },
				itemCount: items.reduce((n, i) => n + i.quantity, 0),
			};
		},
	},
};

export default CartService;
