/**
 * Customers: profiles and addresses. A customer reads and changes only their own; ownership is
 * checked here, whatever path the call took.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, type Transaction } from "sequelize";
import { ConflictError, NotFoundError } from "../../lib/errors";
import { AccessMixin, type Meta, callerOf } from "../../mixins/access.mixin";
import { DbMixin, type DbMethods, type Migration } from "../../mixins/db.mixin";
import { OutboxMixin, type OutboxMethods, outboxMigrations } from "../../mixins/outbox.mixin";
import { COUNTRY_RULE } from "../../lib/country";
import { singleLine } from "../../lib/text";

const MAX_ADDRESSES = 20;

const migrations: Migration[] = [
	{
		name: "001-customers",
		async up(qi, T) {
			await qi.createTable("customers", {
				id: { type: T.STRING(36), primaryKey: true },
				email: { type: T.STRING(254), allowNull: false, unique: true },
				first_name: { type: T.STRING(100), allowNull: false },
				last_name: { type: T.STRING(100), allowNull: false },
				phone: { type: T.STRING(32), allowNull: true },
				created_at: { type: T.DATE, allowNull: false },
				updated_at: { type: T.DATE, allowNull: false },
			});
			await qi.createTable("addresses", {
				id: { type: T.STRING(36), primaryKey: true },
				customer_id: { type: T.STRING(36), allowNull: false },
				line1: { type: T.STRING(200), allowNull: false },
				line2: { type: T.STRING(200), allowNull: true },
				city: { type: T.STRING(100), allowNull: false },
				postal_code: { type: T.STRING(20), allowNull: false },
				country: { type: T.STRING(2), allowNull: false },
				is_default: { type: T.BOOLEAN, allowNull: false },
				created_at: { type: T.DATE, allowNull: false },
			});
			await qi.addIndex("addresses", ["customer_id"]);
		},
	},
	...outboxMigrations,
];

type Svc = Service & DbMethods & OutboxMethods & { [k: string]: any };

export const ADDRESS_RULES = {
	// One line each (lib/text.ts singleLine): a line break in an address or a name is a header or CSV row of its own downstream.
	line1: singleLine(1, 200),
	// null: no second line (how an address without one reads back).
	line2: singleLine(0, 200, { optional: true, nullable: true }),
	city: singleLine(1, 100),
	postalCode: singleLine(1, 20),
	country: COUNTRY_RULE,
};

function publicAddress(a: any) {
	return { id: a.id, line1: a.line1, line2: a.line2 ?? null, city: a.city, postalCode: a.postal_code, country: a.country, isDefault: Boolean(a.is_default) };
}

const CustomersService: ServiceSchema<any, any, any, Svc> = {
	name: "customers",
	mixins: [
		DbMixin({
			name: "customers",
			migrations,
			models: s => ({
				Customer: s.define(
					"Customer",
					{ id: { type: DataTypes.STRING(36), primaryKey: true }, email: DataTypes.STRING(254), first_name: DataTypes.STRING(100), last_name: DataTypes.STRING(100), phone: DataTypes.STRING(32), created_at: DataTypes.DATE, updated_at: DataTypes.DATE },
					{ tableName: "customers", timestamps: false },
				),
				Address: s.define(
					"Address",
					{ id: { type: DataTypes.STRING(36), primaryKey: true }, customer_id: DataTypes.STRING(36), line1: DataTypes.STRING(200), line2: DataTypes.STRING(200), city: DataTypes.STRING(100), postal_code: DataTypes.STRING(20), country: DataTypes.STRING(2), is_default: DataTypes.BOOLEAN, created_at: DataTypes.DATE },
					{ tableName: "addresses", timestamps: false },
				),
			}),
		}),
		OutboxMixin,
		AccessMixin,
	],

	actions: {
		/** Called by auth.register once the credential exists. */
		create: {
			params: { id: "string|max:36", email: "email|max:254", firstName: "string|max:100", lastName: "string|max:100" },
			async handler(this: Svc, ctx: Context<{ id: string; email: string; firstName: string; lastName: string }>) {
				const now = new Date();
				const { id, email, firstName, lastName } = ctx.params;
				try {
					await this.transaction(async (t: Transaction) => {
						await this.models.Customer.create({ id, email, first_name: firstName, last_name: lastName, phone: null, created_at: now, updated_at: now }, { transaction: t });
						await this.recordEvent(t, "customers.customer.registered", { customerId: id, email });
					});
				} catch (err) {
					if (this.isUniqueViolation(err)) throw new ConflictError("An account with this email exists", "EMAIL_TAKEN");
					throw err;
				}
				return this.profile(id);
			},
		},

		me: {
			auth: "customer",
			handler(this: Svc, ctx: Context<unknown, Meta>) {
				return this.profile(callerOf(ctx).id);
			},
		},

		updateMe: {
			auth: "customer",
			params: {
				firstName: singleLine(1, 100, { optional: true }),
				lastName: singleLine(1, 100, { optional: true }),
				// null clears the phone (the profile shows `phone: null`); an absent field leaves it as it is.
				phone: { type: "string", pattern: /^\+?[0-9 ()-]{6,20}$/, optional: true, nullable: true, messages: { stringPattern: "phone must be digits, spaces, (), - and an optional leading +" } },
			},
			async handler(this: Svc, ctx: Context<{ firstName?: string; lastName?: string; phone?: string | null }, Meta>) {
				const id = callerOf(ctx).id;
				const { firstName, lastName, phone } = ctx.params;
				const changes: Record<string, unknown> = { updated_at: new Date() };
				if (firstName !== undefined) changes.first_name = firstName;
				if (lastName !== undefined) changes.last_name = lastName;
				if (phone !== undefined) changes.phone = phone;
				const [n] = await this.models.Customer.update(changes, { where: { id } });
				if (!n) throw new NotFoundError("Customer", "CUSTOMER_NOT_FOUND");
				return this.profile(id);
			},
		},

		addAddress: {
			auth: "customer",
			params: { ...ADDRESS_RULES, isDefault: "boolean|optional" },
			async handler(this: Svc, ctx: Context<any, Meta & { $statusCode?: number }>) {
				const customerId = callerOf(ctx).id;
				const p = ctx.params;
				const address = await this.transaction(async (t: Transaction) => {
					const count = await this.models.Address.count({ where: { customer_id: customerId }, transaction: t });
					if (count >= MAX_ADDRESSES) throw new ConflictError(`At most ${MAX_ADDRESSES} addresses`, "TOO_MANY_ADDRESSES");
					const isDefault = count === 0 || p.isDefault === true;
					if (isDefault) await this.models.Address.update({ is_default: false }, { where: { customer_id: customerId }, transaction: t });
					const row = { id: randomUUID(), customer_id: customerId, line1: p.line1, line2: p.line2 ?? null, city: p.city, postal_code: p.postalCode, country: p.country, is_default: isDefault, created_at: new Date() };
					await this.models.Address.create(row, { transaction: t });
					return row;
				});
				ctx.meta.$statusCode = 201;
				return publicAddress(address);
			},
		},

		removeAddress: {
			auth: "customer",
			params: { id: "string|max:64" },
			async handler(this: Svc, ctx: Context<{ id: string }, Meta & { $statusCode?: number }>) {
				const n = await this.models.Address.destroy({ where: { id: ctx.params.id, customer_id: callerOf(ctx).id } });
				if (!n) throw new NotFoundError("Address", "ADDRESS_NOT_FOUND");
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		/** A customer's address for checkout; another customer's is not found. */
		getAddress: {
			params: { customerId: "string|max:64", addressId: "string|max:64" },
			async handler(this: Svc, ctx: Context<{ customerId: string; addressId: string }>) {
				const a = await this.models.Address.findOne({ where: { id: ctx.params.addressId, customer_id: ctx.params.customerId }, raw: true });
				if (!a) throw new NotFoundError("Address", "ADDRESS_NOT_FOUND");
				return publicAddress(a);
			},
		},
	},

	methods: {
		async profile(this: Svc, id: string) {
			const c: any = await this.models.Customer.findByPk(id, { raw: true });
			if (!c) throw new NotFoundError("Customer", "CUSTOMER_NOT_FOUND");
			const addresses: any[] = await this.models.Address.findAll({ where: { customer_id: id }, order: [["created_at", "ASC"], ["id", "ASC"]], raw: true });
			return { id: c.id, email: c.email, firstName: c.first_name, lastName: c.last_name, phone: c.phone ?? null, addresses: addresses.map(publicAddress) };
		},
	},
};

export default CustomersService;
