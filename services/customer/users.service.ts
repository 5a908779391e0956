/**
 * Users: admin accounts and their roles. The first admin comes from ADMIN_EMAIL /
 * ADMIN_PASSWORD at start-up; admins log in through auth.login, which asks `authenticate`.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes } from "sequelize";
import { config } from "../../config";
import { ADMIN_ROLES } from "../../lib/access";
import { clampPaging } from "../../lib/catalog/query";
import { ConflictError } from "../../lib/errors";
import { normaliseEmail } from "../../lib/identity/refresh-tokens";
import { PASSWORD_RULE, hashPassword, verifyPassword } from "../../lib/passwords";
import { AccessMixin } from "../../mixins/access.mixin";
import { DbMixin, type DbMethods, type Migration, jsonColumn } from "../../mixins/db.mixin";

const migrations: Migration[] = [
	{
		name: "001-admin-users",
		async up(qi, T) {
			await qi.createTable("admin_users", {
				id: { type: T.STRING(36), primaryKey: true },
				email: { type: T.STRING(254), allowNull: false, unique: true },
				name: { type: T.STRING(100), allowNull: false },
				password_hash: { type: T.STRING(200), allowNull: false },
				roles: { type: T.JSON, allowNull: false },
				created_at: { type: T.DATE, allowNull: false },
			});
		},
	},
];

type Svc = Service & DbMethods & { [k: string]: any };

function publicUser(u: any) {
	return { id: u.id, email: u.email, name: u.name, roles: jsonColumn<string[]>(u.roles, []), createdAt: new Date(u.created_at).toISOString() };
}

const UsersService: ServiceSchema<any, any, any, Svc> = {
	name: "users",
	mixins: [
		DbMixin({
			name: "users",
			migrations,
			models: s => ({
				AdminUser: s.define(
					"AdminUser",
					{ id: { type: DataTypes.STRING(36), primaryKey: true }, email: DataTypes.STRING(254), name: DataTypes.STRING(100), password_hash: DataTypes.STRING(200), roles: DataTypes.JSON, created_at: DataTypes.DATE },
					{ tableName: "admin_users", timestamps: false },
				),
			}),
		}),
		AccessMixin,
	],

	actions: {
		list: {
			auth: "admin",
			params: { page: "number|integer|convert|optional", pageSize: "number|integer|convert|optional" },
			async handler(this: Svc, ctx: Context<{ page?: number; pageSize?: number }>) {
				const { page, pageSize, offset } = clampPaging(ctx.params.page, ctx.params.pageSize);
				const { rows, count } = await this.models.AdminUser.findAndCountAll({ order: [["created_at", "ASC"], ["id", "ASC"]], limit: pageSize, offset, raw: true });
				return { items: rows.map(publicUser), total: count, page, pageSize };
			},
		},

		create: {
			auth: "admin",
			roles: ["superadmin"],
			params: {
				email: "email|max:254",
				password: PASSWORD_RULE,
				name: "string|trim|min:1|max:100",
				roles: { type: "array", items: { type: "enum", values: [...ADMIN_ROLES] }, min: 1, max: ADMIN_ROLES.length, unique: true },
			},
			async handler(this: Svc, ctx: Context<{ email: string; password: string; name: string; roles: string[] }, any>) {
				const row = { id: randomUUID(), email: normaliseEmail(ctx.params.email), name: ctx.params.name, password_hash: await hashPassword(ctx.params.password), roles: ctx.params.roles, created_at: new Date() };
				try {
					await this.models.AdminUser.create(row);
				} catch (err) {
					if (this.isUniqueViolation(err)) throw new ConflictError("An admin with this email exists", "EMAIL_TAKEN");
					throw err;
				}
				ctx.meta.$statusCode = 201;
				return publicUser(row);
			},
		},

		/** For auth.login: the admin whose password matches, or null (always one argon2 verification). */
		authenticate: {
			params: { email: "string|max:254", password: "string|max:128" },
			async handler(this: Svc, ctx: Context<{ email: string; password: string }>) {
				const u: any = await this.models.AdminUser.findOne({ where: { email: normaliseEmail(ctx.params.email) }, raw: true });
				const ok = await verifyPassword(u?.password_hash, ctx.params.password);
				return u && ok ? { id: u.id, email: u.email, name: u.name, roles: jsonColumn<string[]>(u.roles, []) } : null;
			},
		},
	},

	async started(this: Svc) {
		const c = config();
		const email = normaliseEmail(c.ADMIN_EMAIL);
		if (await this.models.AdminUser.findOne({ where: { email } })) return;
		try {
			await this.models.AdminUser.create({ id: randomUUID(), email, name: "Administrator", password_hash: await hashPassword(c.ADMIN_PASSWORD), roles: ["superadmin"], created_at: new Date() });
			this.logger.info(`First admin created: ${email}`);
		} catch (err) {
			// Another replica starting at the same moment created it first.
			if (!this.isUniqueViolation(err)) throw err;
		}
	},
};

export default UsersService;
