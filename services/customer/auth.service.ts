/**
 * Auth: customer credentials (argon2id), sessions, rotating refresh tokens with reuse detection,
 * and the session check the gateway makes on every authenticated request.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, type Transaction } from "sequelize";
import { config } from "../../config";
import { ConflictError, UnauthorizedError } from "../../lib/errors";
import { hashRefreshToken, newRefreshToken, normaliseEmail } from "../../lib/identity/refresh-tokens";
import { PASSWORD_RULE, hashPassword, verifyPassword } from "../../lib/passwords";
import { signAccessToken } from "../../lib/tokens";
import { AccessMixin, type Meta, callerOf } from "../../mixins/access.mixin";
import { DbMixin, type DbMethods, type Migration, jsonColumn } from "../../mixins/db.mixin";

const migrations: Migration[] = [
	{
		name: "001-auth",
		async up(qi, T) {
			await qi.createTable("credentials", {
				id: { type: T.STRING(36), primaryKey: true },
				email: { type: T.STRING(254), allowNull: false, unique: true },
				password_hash: { type: T.STRING(200), allowNull: false },
				created_at: { type: T.DATE, allowNull: false },
			});
			await qi.createTable("sessions", {
				id: { type: T.STRING(36), primaryKey: true },
				subject_id: { type: T.STRING(36), allowNull: false },
				typ: { type: T.STRING(16), allowNull: false },
				roles: { type: T.JSON, allowNull: false },
				created_at: { type: T.DATE, allowNull: false },
				expires_at: { type: T.DATE, allowNull: false },
				revoked_at: { type: T.DATE, allowNull: true },
				revoked_reason: { type: T.STRING(32), allowNull: true },
			});
			await qi.addIndex("sessions", ["subject_id"]);
			await qi.createTable("refresh_tokens", {
				id: { type: T.STRING(36), primaryKey: true },
				session_id: { type: T.STRING(36), allowNull: false },
				token_hash: { type: T.STRING(64), allowNull: false, unique: true },
				expires_at: { type: T.DATE, allowNull: false },
				used_at: { type: T.DATE, allowNull: true },
				created_at: { type: T.DATE, allowNull: false },
			});
			await qi.addIndex("refresh_tokens", ["session_id"]);
		},
	},
];

type Svc = Service & DbMethods & { [k: string]: any };
type Subject = { id: string; typ: "customer" | "admin"; roles: string[] };

const AuthService: ServiceSchema<any, any, any, Svc> = {
	name: "auth",
	mixins: [
		DbMixin({
			name: "auth",
			migrations,
			models: s => ({
				Credential: s.define("Credential", { id: { type: DataTypes.STRING(36), primaryKey: true }, email: DataTypes.STRING(254), password_hash: DataTypes.STRING(200), created_at: DataTypes.DATE }, { tableName: "credentials", timestamps: false }),
				Session: s.define(
					"Session",
					{ id: { type: DataTypes.STRING(36), primaryKey: true }, subject_id: DataTypes.STRING(36), typ: DataTypes.STRING(16), roles: DataTypes.JSON, created_at: DataTypes.DATE, expires_at: DataTypes.DATE, revoked_at: DataTypes.DATE, revoked_reason: DataTypes.STRING(32) },
					{ tableName: "sessions", timestamps: false },
				),
				RefreshToken: s.define(
					"RefreshToken",
					{ id: { type: DataTypes.STRING(36), primaryKey: true }, session_id: DataTypes.STRING(36), token_hash: DataTypes.STRING(64), expires_at: DataTypes.DATE, used_at: DataTypes.DATE, created_at: DataTypes.DATE },
					{ tableName: "refresh_tokens", timestamps: false },
				),
			}),
		}),
		AccessMixin,
	],

	actions: {
		register: {
			auth: "public",
			params: {
				email: "email|max:254",
				password: PASSWORD_RULE,
				firstName: "string|trim|min:1|max:100",
				lastName: "string|trim|min:1|max:100",
			},
			async handler(this: Svc, ctx: Context<{ email: string; password: string; firstName: string; lastName: string }, any>) {
				const email = normaliseEmail(ctx.params.email);
				const id = randomUUID();
				const passwordHash = await hashPassword(ctx.params.password);
				try {
					await this.models.Credential.create({ id, email, password_hash: passwordHash, created_at: new Date() });
				} catch (err) {
					if (this.isUniqueViolation(err)) throw new ConflictError("An account with this email exists", "EMAIL_TAKEN");
					throw err;
				}
				let customer;
				try {
					customer = await ctx.call("customers.create", { id, email, firstName: ctx.params.firstName, lastName: ctx.params.lastName });
				} catch (err) {
					// No half-registered account: the credential goes with the profile that failed.
					await this.models.Credential.destroy({ where: { id } });
					this.logger.warn("Registration rolled back: profile could not be created", { customerId: id, err: (err as Error).message });
					throw err;
				}
				const tokens = await this.openSession({ id, typ: "customer", roles: [] });
				ctx.meta.$statusCode = 201;
				return { customer, ...tokens };
			},
		},

		login: {
			auth: "public",
			params: { email: "string|max:254", password: "string|max:128" },
			async handler(this: Svc, ctx: Context<{ email: string; password: string }>) {
				const email = normaliseEmail(ctx.params.email);
				const credential: any = await this.models.Credential.findOne({ where: { email }, raw: true });
				// Both checks always run, so timing tells nothing about which kind of account exists.
				const [customerOk, admin] = await Promise.all([
					verifyPassword(credential?.password_hash, ctx.params.password),
					ctx.call("users.authenticate", { email, password: ctx.params.password }).then(
						(u: any) => ({ user: u, error: null }),
						(error: Error) => ({ user: null, error }),
					),
				]);
				let subject: Subject | undefined;
				if (credential && customerOk) subject = { id: credential.id, typ: "customer", roles: [] };
				else if (admin.user) subject = { id: admin.user.id, typ: "admin", roles: admin.user.roles };
				else if (admin.error) throw admin.error;
				if (!subject) throw new UnauthorizedError("Wrong email or password", "INVALID_CREDENTIALS");
				const tokens = await this.openSession(subject);
				return { ...tokens, user: { id: subject.id, typ: subject.typ, roles: subject.roles } };
			},
		},

		refresh: {
			auth: "public",
			params: { refreshToken: "string|min:1|max:200" },
			async handler(this: Svc, ctx: Context<{ refreshToken: string }>) {
				const rt: any = await this.models.RefreshToken.findOne({ where: { token_hash: hashRefreshToken(ctx.params.refreshToken) }, raw: true });
				if (!rt) throw new UnauthorizedError("Invalid refresh token", "INVALID_REFRESH_TOKEN");
				const session: any = await this.models.Session.findByPk(rt.session_id, { raw: true });
				if (!session || session.revoked_at) throw new UnauthorizedError("Session revoked", "SESSION_REVOKED");
				if (new Date(rt.expires_at) <= new Date()) throw new UnauthorizedError("Refresh token expired", "REFRESH_TOKEN_EXPIRED");
				const next = await this.transaction(async (t: Transaction) => {
					// Exactly one presentation of a refresh token wins, even when two race.
					const [won] = await this.models.RefreshToken.update({ used_at: new Date() }, { where: { id: rt.id, used_at: null }, transaction: t });
					if (!won) return null;
					return this.issueTokens({ id: session.subject_id, typ: session.typ, roles: jsonColumn<string[]>(session.roles, []) }, session.id, t);
				});
				if (!next) {
					await this.revokeSession(session.id, "refresh_reuse");
					this.logger.warn("Refresh token reused: session revoked", { sessionId: session.id, subjectId: session.subject_id });
					throw new UnauthorizedError("Refresh token already used; the session is revoked", "REFRESH_TOKEN_REUSED");
				}
				return next;
			},
		},

		logout: {
			auth: "any",
			async handler(this: Svc, ctx: Context<unknown, Meta & { $statusCode?: number }>) {
				const user = callerOf(ctx);
				if (user.sid) await this.revokeSession(user.sid, "logout");
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		/** Asked by the gateway on every authenticated request: a primary-key lookup. */
		sessionActive: {
			params: { sid: "string|max:64" },
			async handler(this: Svc, ctx: Context<{ sid: string }>) {
				const s: any = await this.models.Session.findByPk(ctx.params.sid, { attributes: ["revoked_at", "expires_at"], raw: true });
				return Boolean(s && !s.revoked_at && new Date(s.expires_at) > new Date());
			},
		},
	},

	methods: {
		async openSession(this: Svc, subject: Subject) {
			const sid = randomUUID();
			const now = new Date();
			return this.transaction(async (t: Transaction) => {
				await this.models.Session.create(
					{ id: sid, subject_id: subject.id, typ: subject.typ, roles: subject.roles, created_at: now, expires_at: new Date(now.getTime() + config().REFRESH_TOKEN_TTL_S * 1000) },
					{ transaction: t },
				);
				return this.issueTokens(subject, sid, t);
			});
		},

		async issueTokens(this: Svc, subject: Subject, sid: string, t: Transaction) {
			const refresh = newRefreshToken();
			const now = new Date();
			await this.models.RefreshToken.create(
				{ id: randomUUID(), session_id: sid, token_hash: refresh.hash, expires_at: new Date(now.getTime() + config().REFRESH_TOKEN_TTL_S * 1000), created_at: now },
				{ transaction: t },
			);
			const access = signAccessToken({ sub: subject.id, typ: subject.typ, roles: subject.roles, sid });
			return { accessToken: access.token, refreshToken: refresh.token, expiresIn: access.expiresIn };
		},

		async revokeSession(this: Svc, sid: string, reason: string) {
			await this.models.Session.update({ revoked_at: new Date(), revoked_reason: reason }, { where: { id: sid, revoked_at: null } });
		},
	},
};

export default AuthService;

