/**
 * What the gateway does to every request before any action sees it (issue 9): security headers,
 * OPTIONS that never run an action, the per-address credential limiter ahead of the body, and the
 * JSON body reader. Connect-style middlewares for moleculer-web's `use`; errors go to `next(err)`
 * as typed 4xx errors and reach the client in API.md's shape.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { type TrustFunction, clientAddress } from "./client-address";
import { BadRequestError, TooManyRequestsError, UnprocessableError } from "./errors";
import { type BodyOptions, readJsonBody } from "./http-body";
import { type FixedWindowLimiter, authBucket } from "./rate-limit";
import { FORBIDDEN_KEYS } from "./text";

type Next = (err?: unknown) => void;
type Req = IncomingMessage & { body?: unknown; parsedUrl?: string; $clientAddress?: string };
export type Middleware = (req: Req, res: ServerResponse, next: Next) => void;

/** The contract page is self-contained: its own styles inline, nothing from elsewhere, never framed. */
export const DOCS_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * Headers on every answer: no MIME sniffing, no referrer, and `Cache-Control: no-store` on
 * whatever may be personal or carry tokens — every answer to an authenticated request and every
 * answer to a method that changes something (login and refresh answers hold tokens: RFC 6749 §5.1).
 */
export function setSecurityHeaders(req: IncomingMessage, res: ServerResponse): void {
	res.setHeader("X-Content-Type-Options", "nosniff");
	res.setHeader("Referrer-Policy", "no-referrer");
	if (req.headers.authorization !== undefined || (req.method !== "GET" && req.method !== "HEAD")) res.setHeader("Cache-Control", "no-store");
}

/** Route templates (`"POST /auth/login"`) under a prefix, as matchers. */
export function routeMatchers(routes: Record<string, string>, prefix: string): { method: string; action: string; re: RegExp }[] {
	return Object.entries(routes).map(([route, action]) => {
		const [method, path] = route.split(" ");
		const pattern = (prefix + path).replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/:\w+/g, "[^/]+");
		return { method, action, re: new RegExp(`^${pattern}/?$`) };
	});
}

/**
 * OPTIONS never runs an action. With CORS configured, moleculer-web answers preflights itself
 * (and they never reach an action either); with CORS off — the default — every OPTIONS is
 * answered here, 204 with the methods the path allows, and no CORS headers, so browsers refuse the
 * cross-origin call. moleculer-web would otherwise route an OPTIONS to the action of its
 * `Access-Control-Request-Method`: a login, an emptied cart.
 */
export function optionsGuard(corsEnabled: boolean, matchers: { method: string; re: RegExp }[]): Middleware {
	return (req, res, next) => {
		if (req.method !== "OPTIONS" || corsEnabled) return next();
		const path = (req.parsedUrl ?? req.url ?? "").split("?")[0];
		const methods = [...new Set(matchers.filter(m => m.re.test(path)).map(m => m.method))];
		res.writeHead(204, { Allow: ["OPTIONS", ...methods].join(", "), "Content-Length": "0" });
		res.end();
	};
}

/**
 * The per-address credential limiter (login, register), before the body is read: a request
 * counts whether or not its body can be read, and whatever token it carries.
 */
export function credentialLimiter<S>(limiterOf: (service: S) => FixedWindowLimiter, trust: TrustFunction, matchers: { method: string; action: string; re: RegExp }[]) {
	// moleculer-web calls middlewares with the gateway service as `this`: each gateway instance has its own counters.
	return function (this: S, req: Req, res: ServerResponse, next: Next): void {
		const limiter = limiterOf(this);
		const path = req.parsedUrl ?? "";
		const match = matchers.find(m => m.method === req.method && m.re.test(path));
		if (!match) return next();
		const address = clientAddress(req, trust);
		req.$clientAddress = address;
		const bucket = authBucket(match.action, address);
		if (!bucket) return next();
		const d = limiter.hit(bucket);
		res.setHeader("X-RateLimit-Limit", String(d.limit));
		res.setHeader("X-RateLimit-Remaining", String(d.remaining));
		next(d.allowed ? undefined : new TooManyRequestsError("Too many attempts from this address, slow down", d.resetInS));
	};
}

/**
 * Query keys that name a prototype (`?__proto__[x]=1`, `?constructor[prototype][y]=1`) are refused
 * as unknown fields (422), as in bodies; the query-string parser would drop them silently, and a
 * silently dropped parameter is a silent change.
 */
export function queryGuard(): Middleware {
	return (req, _res, next) => {
		const url = req.url ?? "";
		const q = url.indexOf("?");
		if (q < 0) return next();
		for (const key of new URLSearchParams(url.slice(q + 1)).keys()) {
			if (key.split(/[[\].]+/).some(segment => FORBIDDEN_KEYS.has(segment))) {
				const field = key.slice(0, 100);
				return next(new UnprocessableError(`Unknown field(s): ${field}`, "VALIDATION_ERROR", [{ field, message: `Unknown field(s): ${field}` }]));
			}
		}
		next();
	};
}

/** Reads a JSON body (lib/http-body.ts) into `req.body` for moleculer-web to merge into params. */
export function jsonBody(opts: BodyOptions): Middleware {
	return (req, _res, next) => {
		if (req.method === "GET" || req.method === "HEAD" || req.method === "OPTIONS") return next();
		readJsonBody(req, opts).then(
			body => {
				req.body = body;
				next();
			},
			next,
		);
	};
}

/**
 * Headers a request may carry once. Node keeps the first of two `Content-Type` or `Authorization`
 * headers and joins two `Idempotency-Key`s into "a, b"; a proxy in front may pick the other one,
 * so two of them are refused (400 DUPLICATE_HEADER) rather than one read as the client did not mean.
 * (`X-Request-Id` is not among them: a proxy may add its own, and two make the gateway pick a fresh id.)
 */
export const SINGLE_HEADERS: ReadonlySet<string> = new Set(["authorization", "content-type", "content-encoding", "idempotency-key", "host"]);

/** The first header of SINGLE_HEADERS that `rawHeaders` (Node's name, value, name, value… list) holds twice, or undefined. */
export function repeatedHeader(rawHeaders: readonly string[]): string | undefined {
	const seen = new Set<string>();
	for (let i = 0; i < rawHeaders.length; i += 2) {
		const name = rawHeaders[i].toLowerCase();
		if (!SINGLE_HEADERS.has(name)) continue;
		if (seen.has(name)) return name;
		seen.add(name);
	}
	return undefined;
}

/** The first query-string piece whose percent-encoding is not UTF-8 (`%E0%A4%A`, `%C0%AE`), or undefined. */
export function malformedQueryPiece(query: string): string | undefined {
	for (const piece of query.split(/[&=]/)) {
		try {
			decodeURIComponent(piece.replace(/\+/g, " "));
		} catch {
			return piece.slice(0, 100);
		}
	}
	return undefined;
}

/**
 * Refuses, before anything reads them: a header of SINGLE_HEADERS sent twice, and a query string
 * whose percent-encoding does not decode (the query parser would keep `%E0%A4%A` as literal text
 * and search for it; a path with one is already 400). Both 400 in API.md's shape.
 */
export function requestGuard(): Middleware {
	return (req, _res, next) => {
		const header = repeatedHeader(req.rawHeaders);
		if (header) return next(new BadRequestError(`The ${header} header must be sent once`, "DUPLICATE_HEADER"));
		const url = req.url ?? "";
		const q = url.indexOf("?");
		const piece = q < 0 ? undefined : malformedQueryPiece(url.slice(q + 1));
		if (piece !== undefined) return next(new BadRequestError(`The query string is not valid percent-encoded UTF-8 (${piece})`, "BAD_QUERY_ENCODING"));
		next();
	};
}

/** The parameters of one request by where they came from. */
export interface ParamSources {
	path: readonly string[];
	query: Record<string, unknown> | undefined;
	body: unknown;
}

/**
 * The gateway merges path, query and body into one params object, the path over the query over
 * the body (moleculer-web): `POST /cart/items?productId=B` with `{"productId": "A"}` would add B,
 * and `PATCH /products/A` with `{"id": "B"}` would ignore the body's id without a word. A name
 * given by two sources is refused instead (422 VALIDATION_ERROR, the field named), so what is
 * acted on is always what the client sent, once.
 */
export function paramConflicts(sources: ParamSources): string[] {
	const body = sources.body && typeof sources.body === "object" && !Array.isArray(sources.body) ? Object.keys(sources.body) : [];
	const query = Object.keys(sources.query ?? {});
	const taken = new Set(sources.path);
	const conflicts: string[] = [];
	for (const name of [...query, ...body]) {
		if (taken.has(name)) conflicts.push(name);
		else taken.add(name);
	}
	return [...new Set(conflicts)];
}

/** Throws the 422 of `paramConflicts` when a name comes from two sources. */
export function checkParamSources(sources: ParamSources): void {
	const conflicts = paramConflicts(sources);
	if (conflicts.length) {
		throw new UnprocessableError(`Given twice (path, query or body): ${conflicts.join(", ")}`, "VALIDATION_ERROR", conflicts.map(field => ({ field, message: `${field} is given more than once (path, query or body)` })));
	}
}
