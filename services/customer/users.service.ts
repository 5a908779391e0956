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
import { EMAIL_PARAM, normaliseEmail, parseEmail } from "../../lib/identity/email";
import { PASSWORD_RULE, hashPassword, verifyPassword } from "../../lib/passwords";
import { AccessMixin } from "../../mixins/access.mixin";
import { DbMixin, type DbMethods, type Migration, jsonColumn } from "../../mixins/db.mixin";
import { singleLine } from "../../lib/text";

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
				email: EMAIL_PARAM,
				password: PASSWORD_RULE,
				name: singleLine(1, 100),
				roles: { type: "array", items: { type: "enum", values: [...ADMIN_ROLES] }, min: 1, max: ADMIN_ROLES.length, unique: true },
			},
			async handler(this: Svc, ctx: Context<{ email: string; password: string; name: string; roles: string[] }, any>) {
				const email = parseEmail(ctx.params.email);
				const row = { id: randomUUID(), email, name: ctx.params.name, password_hash: await hashPassword(ctx.params.password), roles: ctx.params.roles, created_at: new Date() };
				// Customers and admins share one email namespace, held by auth (409 EMAIL_TAKEN if anyone has it).
				await ctx.call("auth.reserveEmail", { email, kind: "admin", subjectId: row.id });
				try {
					await this.models.AdminUser.create(row);
				} catch (err) {
					await ctx.call("auth.releaseEmail", { email, subjectId: row.id });
					if (this.isUniqueViolation(err)) throw new ConflictError("An admin with this email exists", "EMAIL_TAKEN");
					throw err;
				}
				ctx.meta.$statusCode = 201;
				return publicUser(row);
			},
		},

		/** For auth.login: the admin whose password matches, or null (always one argon2 verification). */
		authenticate: {
			params: { email: EMAIL_PARAM, password: "string|max:128" },
			async handler(this: Svc, ctx: Context<{ email: string; password: string }>) {
				const u: any = await this.models.AdminUser.findOne({ where: { email: normaliseEmail(ctx.params.email) }, raw: true });
				const ok = await verifyPassword(u?.password_hash, ctx.params.password);
				return u && ok ? { id: u.id, email: u.email, name: u.name, roles: jsonColumn<string[]>(u.roles, []) } : null;
			},
		},
	},

	// Admin emails are held in auth's namespace (auth.reserveEmail), so auth must be there first.
	dependencies: ["auth"],

	async started(this: Svc) {
		const c = config();
		const email = normaliseEmail(c.ADMIN_EMAIL);
		if (!(await this.models.AdminUser.findOne({ where: { email } }))) {
			try {
				await this.models.AdminUser.create({ id: randomUUID(), email, name: "Administrator", password_hash: await hashPassword(c.ADMIN_PASSWORD), roles: ["superadmin"], created_at: new Date() });
				this.logger.info(`First admin created: ${email}`);
			} catch (err) {
				// Another replica starting at the same moment created it first.
				if (!this.isUniqueViolation(err)) throw err;
			}
		}
		await this.reserveAdminEmails();
	},

	methods: {
		/** Every admin's address held in the shared namespace (admins created before it existed, the first admin); a clash is reported, not fatal. */
		async reserveAdminEmails(this: Svc) {
			const admins: any[] = await this.models.AdminUser.findAll({ attributes: ["id", "email"], raw: true });
			for (const a of admins) {
				try {
					await this.broker.call("auth.reserveEmail", { email: a.email, kind: "admin", subjectId: a.id });
				} catch (err) {
					this.logger.warn(`Admin ${a.id}: its email could not be held in the shared namespace`, (err as Error).message);
				}
			}
		},
	},
};

export default UsersService;
