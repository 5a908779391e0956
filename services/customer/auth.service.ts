/**
 * Auth: customer credentials (argon2id), sessions, rotating refresh tokens with reuse detection,
 * and the session check the gateway makes on every authenticated request.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema } from "moleculer";
import { DataTypes, Op, type Transaction } from "sequelize";
import { config } from "../../config";
import { ConflictError, TooManyRequestsError, UnauthorizedError } from "../../lib/errors";
import { EMAIL_PARAM, normaliseEmail, parseEmail } from "../../lib/identity/email";
import { LOGIN_THROTTLE, type ThrottlePolicy, type ThrottleState, addressKey, admit, bucketKey, countAttempt, current } from "../../lib/identity/login-throttle";
import { hashRefreshToken, newRefreshToken } from "../../lib/identity/refresh-tokens";
import { PASSWORD_RULE, hashPassword, verifyPassword } from "../../lib/passwords";
import { REVOKED_PAGE, SESSIONS_REVOKED_EVENT } from "../../lib/identity/revocations";
import { singleLine } from "../../lib/text";
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
	{
		name: "i9-001-email-namespace",
		async up(qi, T) {
			// One namespace for customers and admin users: whoever holds an address here owns it.
			await qi.createTable("email_reservations", {
				email: { type: T.STRING(320), primaryKey: true },
				kind: { type: T.STRING(16), allowNull: false },
				subject_id: { type: T.STRING(36), allowNull: false },
				created_at: { type: T.DATE(3), allowNull: false },
			});
			// Existing customers, their addresses brought to the normal form where that collides with nobody.
			const rows = (await qi.sequelize.query("SELECT id, email, created_at FROM credentials ORDER BY created_at, id", { type: "SELECT" })) as { id: string; email: string; created_at: Date }[];
			const taken = new Set<string>();
			for (const r of rows) {
				const email = normaliseEmail(r.email);
				if (taken.has(email)) continue; // a look-alike of an earlier account keeps its old spelling and logs in by it
				taken.add(email);
				if (email !== r.email) await qi.bulkUpdate("credentials", { email }, { id: r.id });
				await qi.bulkInsert("email_reservations", [{ email, kind: "customer", subject_id: r.id, created_at: new Date() }]);
			}
		},
	},
	{
		name: "i9-002-login-throttle",
		async up(qi, T) {
			await qi.createTable("login_throttle", {
				bucket: { type: T.STRING(64), primaryKey: true },
				failures: { type: T.INTEGER, allowNull: false },
				blocked_until: { type: T.DATE(3), allowNull: true },
				last_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("login_throttle", ["last_at"]);
			await qi.createTable("login_known_addresses", {
				key: { type: T.STRING(64), primaryKey: true },
				last_success_at: { type: T.DATE(3), allowNull: false },
			});
			await qi.addIndex("login_known_addresses", ["last_success_at"]);
		},
	},
	{
		name: "i10-001-sessions-revoked-at",
		async up(qi) {
			// Gateways ask for the sessions revoked since their last look (auth.revokedSince).
			await qi.addIndex("sessions", ["revoked_at"]);
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
				EmailReservation: s.define(
					"EmailReservation",
					{ email: { type: DataTypes.STRING(320), primaryKey: true }, kind: DataTypes.STRING(16), subject_id: DataTypes.STRING(36), created_at: DataTypes.DATE(3) },
					{ tableName: "email_reservations", timestamps: false },
				),
				LoginThrottle: s.define(
					"LoginThrottle",
					{ bucket: { type: DataTypes.STRING(64), primaryKey: true }, failures: DataTypes.INTEGER, blocked_until: DataTypes.DATE(3), last_at: DataTypes.DATE(3) },
					{ tableName: "login_throttle", timestamps: false },
				),
				KnownAddress: s.define("KnownAddress", { key: { type: DataTypes.STRING(64), primaryKey: true }, last_success_at: DataTypes.DATE(3) }, { tableName: "login_known_addresses", timestamps: false }),
			}),
		}),
		AccessMixin,
	],

	actions: {
		register: {
			auth: "public",
			params: {
				email: EMAIL_PARAM,
				password: PASSWORD_RULE,
				firstName: singleLine(1, 100),
				lastName: singleLine(1, 100),
			},
			async handler(this: Svc, ctx: Context<{ email: string; password: string; firstName: string; lastName: string }, any>) {
				const email = parseEmail(ctx.params.email);
				const id = randomUUID();
				const passwordHash = await hashPassword(ctx.params.password);
				try {
					// The reservation's key decides between this and any admin user or concurrent registration.
					await this.transaction(async (t: Transaction) => {
						await this.models.EmailReservation.create({ email, kind: "customer", subject_id: id, created_at: new Date() }, { transaction: t });
						await this.models.Credential.create({ id, email, password_hash: passwordHash, created_at: new Date() }, { transaction: t });
					});
				} catch (err) {
					if (this.isUniqueViolation(err)) throw new ConflictError("An account with this email exists", "EMAIL_TAKEN");
					throw err;
				}
				let customer;
				try {
					customer = await ctx.call("customers.create", { id, email, firstName: ctx.params.firstName, lastName: ctx.params.lastName });
				} catch (err) {
					// No half-registered account: the credential and its address go with the profile that failed.
					await this.transaction(async (t: Transaction) => {
						await this.models.Credential.destroy({ where: { id }, transaction: t });
						await this.models.EmailReservation.destroy({ where: { email, subject_id: id }, transaction: t });
					});
					this.logger.warn("Registration rolled back: profile could not be created", { customerId: id, err: (err as Error).message });
					throw err;
				}
				// Signing up is signing in: this address is one the account is known at.
				if (ctx.meta.clientAddress) await this.models.KnownAddress.upsert({ key: addressKey(email, ctx.meta.clientAddress), last_success_at: new Date() });
				const tokens = await this.openSession({ id, typ: "customer", roles: [] });
				ctx.meta.$statusCode = 201;
				return { customer, ...tokens };
			},
		},

		login: {
			auth: "public",
			params: { email: EMAIL_PARAM, password: "string|max:128" },
			async handler(this: Svc, ctx: Context<{ email: string; password: string }, { clientAddress?: string }>) {
				const email = normaliseEmail(ctx.params.email);
				const bucket = await this.throttleBucket(email, ctx.meta.clientAddress);
				await this.claimAttempt(bucket);
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
				await this.loginSucceeded(email, bucket, ctx.meta.clientAddress);
				const tokens = await this.openSession(subject);
				return { ...tokens, user: { id: subject.id, typ: subject.typ, roles: subject.roles } };
			},
		},

		/**
		 * For users.create: holds an address for an admin user, in the one namespace of customers
		 * and admins. 409 EMAIL_TAKEN when someone else holds it; holding it again is a no-op.
		 */
		reserveEmail: {
			params: { email: EMAIL_PARAM, kind: { type: "enum", values: ["admin"] }, subjectId: "string|min:1|max:36" },
			async handler(this: Svc, ctx: Context<{ email: string; kind: "admin"; subjectId: string }>) {
				const email = parseEmail(ctx.params.email);
				try {
					await this.models.EmailReservation.create({ email, kind: ctx.params.kind, subject_id: ctx.params.subjectId, created_at: new Date() });
				} catch (err) {
					if (!this.isUniqueViolation(err)) throw err;
					const holder: any = await this.models.EmailReservation.findByPk(email, { raw: true });
					if (holder?.subject_id !== ctx.params.subjectId) throw new ConflictError("An account with this email exists", "EMAIL_TAKEN");
				}
				return { email };
			},
		},

		/** For users.create that failed after reserving: gives the address back (only the holder's own). */
		releaseEmail: {
			params: { email: EMAIL_PARAM, subjectId: "string|min:1|max:36" },
			async handler(this: Svc, ctx: Context<{ email: string; subjectId: string }>) {
				return { released: (await this.models.EmailReservation.destroy({ where: { email: normaliseEmail(ctx.params.email), subject_id: ctx.params.subjectId } })) > 0 };
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

		/**
		 * Sessions revoked at or after `since` (ms since the epoch), oldest first, at most REVOKED_PAGE (5000; a full page: ask again from its last):
		 * `{ items: [{ sid, revokedAt }], now }` (`now`: this node's clock, the next `since`). The
		 * gateways' revocation lists (lib/identity/revocations.ts) follow this every second.
		 */
		revokedSince: {
			params: { since: "number|integer|min:0" },
			async handler(this: Svc, ctx: Context<{ since: number }>) {
				const now = Date.now();
				const rows: any[] = await this.models.Session.findAll({
					where: { revoked_at: { [Op.gte]: new Date(ctx.params.since) } },
					attributes: ["id", "revoked_at"],
					order: [["revoked_at", "ASC"]],
					limit: REVOKED_PAGE,
					raw: true,
				});
				return { items: rows.map(r => ({ sid: r.id, revokedAt: new Date(r.revoked_at).getTime() })), now };
			},
		},

		/** Asked by the gateway when its revocation list is not fresh (lib/identity/revocations.ts): a primary-key lookup. */
		sessionActive: {
			params: { sid: "string|max:64" },
			async handler(this: Svc, ctx: Context<{ sid: string }>) {
				const s: any = await this.models.Session.findByPk(ctx.params.sid, { attributes: ["revoked_at", "expires_at"], raw: true });
				return Boolean(s && !s.revoked_at && new Date(s.expires_at) > new Date());
			},
		},
	},

	methods: {
		/** The account's throttle bucket, or its own one at an address where this account signed in lately. */
		async throttleBucket(this: Svc, email: string, address: string | undefined): Promise<string> {
			if (!address) return bucketKey(email);
			const known: any = await this.models.KnownAddress.findByPk(addressKey(email, address), { raw: true });
			const fresh = known && Date.now() - new Date(known.last_success_at).getTime() < LOGIN_THROTTLE.KNOWN_ADDRESS_DAYS * 86_400_000;
			return bucketKey(email, fresh ? address : undefined);
		},

		/**
		 * Counts a login attempt in its bucket before the password is checked, or refuses it (429)
		 * while the bucket waits. A conditional update on the count read, so concurrent attempts
		 * each count once and none passes a wait another one started.
		 */
		async claimAttempt(this: Svc, bucket: string): Promise<void> {
			const c = config();
			const policy: ThrottlePolicy = { ...LOGIN_THROTTLE, BASE_DELAY_MS: c.LOGIN_THROTTLE_BASE_MS, MAX_DELAY_MS: c.LOGIN_THROTTLE_MAX_MS };
			for (let attempt = 0; attempt < 8; attempt++) {
				const now = Date.now();
				const row: any = await this.models.LoginThrottle.findByPk(bucket, { raw: true });
				const state: ThrottleState = current(row ? { failures: row.failures, blockedUntil: row.blocked_until ? new Date(row.blocked_until).getTime() : 0, lastAt: new Date(row.last_at).getTime() } : undefined, now, policy);
				const verdict = admit(state, now);
				if (!verdict.allowed) throw new TooManyRequestsError("Too many failed logins for this account; try again later", verdict.retryAfterS, "LOGIN_THROTTLED");
				const next = countAttempt(state, now, policy);
				const values = { failures: next.failures, blocked_until: next.blockedUntil ? new Date(next.blockedUntil) : null, last_at: new Date(next.lastAt) };
				if (!row) {
					try {
						await this.models.LoginThrottle.create({ bucket, ...values });
						return;
					} catch (err) {
						if (!this.isUniqueViolation(err)) throw err;
						continue;
					}
				}
				// Only if nobody counted an attempt since this one read the row.
				const [n] = await this.models.LoginThrottle.update(values, { where: { bucket, failures: row.failures, last_at: new Date(row.last_at) } });
				if (n) return;
			}
			throw new TooManyRequestsError("Too many concurrent logins for this account; try again", 1, "LOGIN_THROTTLED");
		},

		/** A success clears its bucket and marks the address as one this account signs in from. */
		async loginSucceeded(this: Svc, email: string, bucket: string, address: string | undefined): Promise<void> {
			await this.models.LoginThrottle.destroy({ where: { bucket } });
			if (address) await this.models.KnownAddress.upsert({ key: addressKey(email, address), last_success_at: new Date() });
		},

		/** Forgets faded throttle buckets and addresses not seen for KNOWN_ADDRESS_DAYS. */
		async sweepLoginThrottle(this: Svc): Promise<void> {
			const now = Date.now();
			await this.models.LoginThrottle.destroy({ where: { last_at: { [Op.lt]: new Date(now - LOGIN_THROTTLE.RESET_AFTER_MS) } } });
			await this.models.KnownAddress.destroy({ where: { last_success_at: { [Op.lt]: new Date(now - LOGIN_THROTTLE.KNOWN_ADDRESS_DAYS * 86_400_000) } } });
		},

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

		/** Revokes a session and tells every gateway at once (`auth.sessions.revoked`, a broadcast; the gateways' periodic look at `revokedSince` catches a missed one). */
		async revokeSession(this: Svc, sid: string, reason: string) {
			const at = new Date();
			await this.models.Session.update({ revoked_at: at, revoked_reason: reason }, { where: { id: sid, revoked_at: null } });
			this.broker.broadcast(SESSIONS_REVOKED_EVENT, { sids: [sid], revokedAt: at.getTime() });
		},
	},

	started(this: Svc) {
		this.throttleSweep = setInterval(() => this.sweepLoginThrottle().catch((err: Error) => this.logger.warn("Login throttle sweep failed", err.message)), 10 * 60_000);
		this.throttleSweep.unref();
	},

	stopped(this: Svc) {
		clearInterval(this.throttleSweep);
	},
};

export default AuthService;

