/**
 * The gateway (moleculer-web): the REST contract of shared/API.md under /api/v1, health,
 * OpenAPI and docs. It authenticates (JWT), applies rate limits and the error shape; the owning
 * services authorise again on their side.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Context, ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import { config } from "../../config";
import { type AuthRule, checkAccess } from "../../lib/access";
import { clientAddress, trustFunction } from "../../lib/client-address";
import { NotFoundError, TooManyRequestsError, UnauthorizedError, retryAfterOf } from "../../lib/errors";
import { parseByteSize } from "../../lib/http-body";
import { checkParamSources, credentialLimiter, jsonBody, optionsGuard, queryGuard, requestGuard, routeMatchers, setSecurityHeaders } from "../../lib/http-edge";
import { toErrorBody } from "../../lib/http-errors";
import { publicReadiness } from "../../lib/public-readiness";
import { drainMiddleware } from "../../lib/graceful";
import { httpMetricsMiddleware } from "../../lib/metrics";
import { locationFor } from "../../lib/api-contract";
import { DOCS_CSP, buildOpenApi, docsAsset, renderDocsPage } from "../../lib/openapi";
import { FixedWindowLimiter, authBucket, generalBucket } from "../../lib/rate-limit";
import { readiness } from "../../lib/readiness";
import { RevocationList, SESSIONS_REVOKED_EVENT } from "../../lib/identity/revocations";
import { verifyAccessToken } from "../../lib/tokens";
import { PUBLIC_ROUTES } from "./routes";

type Req = IncomingMessage & { $action?: { name: string; auth?: AuthRule; roles?: string[] }; $ctx?: Context; body?: unknown };
type Res = ServerResponse & { $ctx?: Context };

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
	if (res.headersSent) return;
	res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", ...headers });
	res.end(JSON.stringify(body));
}

const c = config();
const trust = trustFunction(c.TRUST_PROXY);
const API_MATCHERS = routeMatchers(PUBLIC_ROUTES, "/api/v1");
const ALL_MATCHERS = [...API_MATCHERS, ...routeMatchers({ "GET /openapi.json": "api.openapi", "GET /docs": "api.docs" }, "/api"), ...routeMatchers({ "GET /live": "api.live", "GET /ready": "api.ready" }, "/health")];
const CREDENTIAL_MATCHERS = API_MATCHERS.filter(m => m.action === "auth.login" || m.action === "auth.register");
/** JSON bodies nest at most this deep (the deepest body of the contract nests 4 levels). */
const MAX_BODY_DEPTH = 16;

const ApiService: ServiceSchema = {
	name: "api",
	mixins: [ApiGateway],

	settings: {
		port: c.PORT,
		ip: c.HOST,
		// Requests are logged with their request id by our own hook; moleculer-web's lines would be noise.
		logRequest: "debug",
		logResponse: "debug",
		log4XXResponses: false,
		// The request id rides on every call and every log line of the request.
		rootCallOptions(options: Record<string, unknown>, req: IncomingMessage, res: ServerResponse) {
			const sent = req.headers["x-request-id"];
			const id = typeof sent === "string" && REQUEST_ID.test(sent) ? sent : randomUUID();
			options.requestID = id;
			res.setHeader("X-Request-Id", id);
			setSecurityHeaders(req, res);
		},
		cors: c.CORS_ORIGINS.length
			? {
					origin: c.CORS_ORIGINS,
					methods: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
					allowedHeaders: ["Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id"],
					exposedHeaders: ["X-Request-Id", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
					credentials: false,
					maxAge: 600,
				}
			: false,
		// Nothing new once the node stops (lib/graceful.ts); every answer counted and timed by route
		// pattern and status (lib/metrics.ts); before every route's own middlewares, an OPTIONS never
		// reaches an action (lib/http-edge.ts).
		use: [drainMiddleware, ...(c.METRICS_ENABLED ? [httpMetricsMiddleware] : []), optionsGuard(Boolean(c.CORS_ORIGINS.length), ALL_MATCHERS)],
		routes: [
			{
				path: "/api/v1",
				aliases: PUBLIC_ROUTES,
				mappingPolicy: "restrict",
				authentication: true,
				authorization: true,
				// Our own reader (lib/http-body.ts), after the credential limiter so that unreadable bodies count.
				bodyParsers: false,
				use: [requestGuard(), queryGuard(), credentialLimiter((svc: any) => svc.authLimiter, trust, CREDENTIAL_MATCHERS), jsonBody({ limitBytes: parseByteSize(c.BODY_LIMIT), maxDepth: MAX_BODY_DEPTH })],
				callOptions: {},
				onBeforeCall(this: any, ctx: Context<unknown, any>, _route: unknown, req: Req) {
					// A name from two of path, query and body is refused, not silently overridden (lib/http-edge.ts).
					checkParamSources({ path: ((req as any).$alias?.keys ?? []).map((k: { name: string }) => k.name), query: (req as any).query, body: req.body });
					// The auth service throttles failed logins per account, apart for addresses it has seen sign in.
					if (req.$action?.name === "auth.login" || req.$action?.name === "auth.register") ctx.meta.clientAddress = clientAddress(req, trust);
					const key = req.headers["idempotency-key"];
					if (typeof key === "string") ctx.meta.idempotencyKey = key;
					else if (key !== undefined) ctx.meta.idempotencyKey = "";
				},
				onAfterCall(this: any, ctx: Context<unknown, any>, _route: unknown, req: Req, res: Res, data: unknown) {
					if (ctx.meta.$statusCode === 204) return null;
					// A 201 says where the created resource is (lib/api-contract.ts).
					if (ctx.meta.$statusCode === 201 && !ctx.meta.$location && req.$action) ctx.meta.$location = locationFor(req.$action.name, data, (req as any).$params ?? {});
					return data;
				},
			},
			{
				path: "/api",
				aliases: { "GET /openapi.json": "api.openapi", "GET /docs": "api.docs", "GET /docs/:file": "api.docsAsset" },
				mappingPolicy: "restrict",
				bodyParsers: false,
			},
			{
				path: "/health",
				aliases: { "GET /live": "api.live", "GET /ready": "api.ready" },
				mappingPolicy: "restrict",
				bodyParsers: false,
				// Anonymous clients get the names of what is down or degraded, not the report's details (lib/public-readiness.ts).
				onAfterCall: (_ctx: unknown, _route: unknown, req: Req, _res: unknown, data: any) => (req.$action?.name === "api.ready" ? publicReadiness(data) : data),
			},
		],
		onError(this: any, req: Req, res: Res, err: any) {
			const body = toErrorBody(err);
			const requestId = String(res.getHeader("X-Request-Id") ?? "");
			// A 503 is a dependency not there (yet): expected while a cluster starts, one line without a stack.
			const url = (req as { originalUrl?: string }).originalUrl ?? req.url;
			if (body.code === 503) this.logger.warn(`${req.method} ${url} answered 503 ${body.type}: ${body.message}`, { requestId });
			else if (body.code >= 500) this.logger.error(`${req.method} ${url} failed`, { requestId, err: err?.message, type: err?.type, stack: err?.stack });
			const headers: Record<string, string> = {};
			if (body.code === 503 || body.code === 429) headers["Retry-After"] = String(retryAfterOf(err) ?? (body.code === 503 ? 2 : 1));
			sendJson(res, body.code, body, headers);
		},
	},

	actions: {
		// The gateway's own entry must not be retried, queued or tripped: each of those would turn
		// a real answer (a 500 or a slow call) into a 404/429 for an unrelated request.
		rest: {
			retryPolicy: { enabled: false },
			bulkhead: { enabled: false },
			circuitBreaker: { enabled: false },
			timeout: 0,
		} as any,

		live: {
			auth: "public",
			handler() {
				return { status: "ok" };
			},
		},

		ready: {
			auth: "public",
			async handler(this: any, ctx: Context<unknown, any>) {
				const report = await this.readiness();
				ctx.meta.$statusCode = report.status === "ok" ? 200 : 503;
				// The full report for operators (`call api.ready`); the public route answers only names (lib/public-readiness.ts).
				return report;
			},
		},

		openapi: {
			auth: "public",
			handler(this: any) {
				return this.contractDocument();
			},
		},

		/** Swagger UI over /api/openapi.json (lib/openapi.ts). */
		docs: {
			auth: "public",
			handler(this: any, ctx: Context<unknown, any>) {
				ctx.meta.$responseType = "text/html; charset=utf-8";
				ctx.meta.$responseHeaders = { "Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff" };
				return renderDocsPage(this.contractDocument());
			},
		},

		/** The docs page's scripts and styles, from the swagger-ui-dist package (a fixed list of names). */
		docsAsset: {
			auth: "public",
			params: { file: "string|max:64" },
			handler(this: any, ctx: Context<{ file: string }, any>) {
				const asset = docsAsset(ctx.params.file);
				if (!asset) throw new NotFoundError("Docs asset", "NOT_FOUND");
				ctx.meta.$responseType = asset.type;
				ctx.meta.$responseHeaders = { "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff" };
				return asset.body;
			},
		},
	},

	methods: {
		/** Replaces moleculer-web's, which logs every non-4xx error as ERROR with its stack: `onError` logs (a 503 as one warning). */
		errorHandler(this: any, req: Req, res: Res, err: unknown) {
			this.sendError(req, res, err);
		},

		/** The OpenAPI document, from the route table and the actions' definitions in the registry. */
		contractDocument(this: any) {
			const actions = new Map<string, any>(this.broker.registry.getActionList({ skipInternal: true, withEndpoints: false }).map((a: any) => [a.name, a.action]));
			return buildOpenApi(PUBLIC_ROUTES, name => actions.get(name));
		},

		/** Verifies the bearer token locally (signature, algorithm, expiry, issuer, audience), then checks its session against this replica's revocation list (lib/identity/revocations.ts). */
		async authenticate(this: any, ctx: Context<unknown, any>, _route: unknown, req: Req) {
			const header = req.headers.authorization;
			if (!header) return null;
			const m = /^Bearer\s+(\S+)$/i.exec(header);
			if (!m) throw new UnauthorizedError("Malformed Authorization header", "INVALID_TOKEN");
			const claims = verifyAccessToken(m[1]);
			const active = await (this.revocations as RevocationList).isActive(ctx, claims.sid);
			if (!active) throw new UnauthorizedError("Session revoked", "SESSION_REVOKED");
			return { id: claims.sub, typ: claims.typ, roles: claims.roles, sid: claims.sid };
		},

		authorize(this: any, ctx: Context<unknown, any>, _route: unknown, req: Req, res: Res) {
			const action = req.$action;
			this.applyRateLimit(ctx, req, res, action?.name ?? "");
			checkAccess(ctx.meta.user ?? undefined, action?.auth ?? "any", action?.roles ?? []);
		},

		/** The general limit per user or address, and refresh's own per token (login and register are limited before their body is read). */
		applyRateLimit(this: any, ctx: Context<unknown, any>, req: Req, res: Res, actionName: string) {
			const address = clientAddress(req, trust);
			const refresh = authBucket(actionName, address, (req as any).$params);
			const decisions = [(this.limiter as FixedWindowLimiter).hit(generalBucket(ctx.meta.user?.id, address))];
			if (actionName === "auth.refresh" && refresh) decisions.push((this.authLimiter as FixedWindowLimiter).hit(refresh));
			const d = decisions.find(x => !x.allowed) ?? decisions[decisions.length - 1];
			res.setHeader("X-RateLimit-Limit", String(d.limit));
			res.setHeader("X-RateLimit-Remaining", String(d.remaining));
			if (!d.allowed) throw new TooManyRequestsError("Too many requests, slow down", d.resetInS);
		},

		/** This node's services, their databases, the transporter and what they need (lib/readiness.ts). */
		readiness(this: any) {
			return readiness(this.broker);
		},
	},

	events: {
		/** `auth` revoked sessions: refused here from now on (lib/identity/revocations.ts). */
		[SESSIONS_REVOKED_EVENT](this: any, ctx: Context<{ sids: string[]; revokedAt: number }>) {
			if (Array.isArray(ctx.params?.sids)) (this.revocations as RevocationList).add(ctx.params.sids, Number(ctx.params.revokedAt) || Date.now());
		},
	},

	started(this: any) {
		this.revocations.start();
	},

	stopped(this: any) {
		this.revocations.stop();
	},

	created(this: any) {
		// Revocations matter for an access token's lifetime plus lib/tokens.ts's 5 s clock tolerance.
		this.revocations = new RevocationList(this.broker, (c.ACCESS_TOKEN_TTL_S + 5) * 1000);
		this.limiter = new FixedWindowLimiter(c.RATE_LIMIT_MAX, c.RATE_LIMIT_WINDOW_MS);
		this.authLimiter = new FixedWindowLimiter(c.AUTH_RATE_LIMIT_MAX, c.RATE_LIMIT_WINDOW_MS);
	},
};

export default ApiService;
