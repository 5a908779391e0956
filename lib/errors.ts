/**
 * Typed errors. Client errors (4xx) carry a stable `type`; `MoleculerRetryableError`s are the
 * only ones the broker's retry policy retries.
 */
import { Errors } from "moleculer";

const { MoleculerClientError, MoleculerRetryableError } = Errors;

export interface FieldProblem {
	field: string;
	message: string;
}

export class NotFoundError extends MoleculerClientError {
	constructor(what: string, type = "NOT_FOUND") {
		super(`${what} not found`, 404, type);
		this.name = "NotFoundError";
	}
}

export class ConflictError extends MoleculerClientError {
	constructor(message: string, type: string, data?: unknown) {
		super(message, 409, type, data);
		this.name = "ConflictError";
	}
}

export class ForbiddenError extends MoleculerClientError {
	constructor(message = "Not allowed", type = "FORBIDDEN") {
		super(message, 403, type);
		this.name = "ForbiddenError";
	}
}

export class UnauthorizedError extends MoleculerClientError {
	constructor(message = "Authentication required", type = "UNAUTHORIZED") {
		super(message, 401, type);
		this.name = "UnauthorizedError";
	}
}

/** 422 with the same `data` shape as the parameter validator's errors. */
export class UnprocessableError extends MoleculerClientError {
	constructor(message: string, type = "VALIDATION_ERROR", data: FieldProblem[] = []) {
		super(message, 422, type, data);
		this.name = "ValidationError";
	}
}

export class BadRequestError extends MoleculerClientError {
	constructor(message: string, type = "BAD_REQUEST") {
		super(message, 400, type);
		this.name = "BadRequestError";
	}
}

/** A dependency could not answer; retrying later makes sense. */
export class DependencyUnavailableError extends MoleculerRetryableError {
	constructor(message: string, type = "SERVICE_UNAVAILABLE", data?: unknown) {
		super(message, 503, type, data);
		this.name = "DependencyUnavailableError";
	}
}

/** 413: a body larger than the gateway takes (BODY_LIMIT), before or after decompression. */
export class PayloadTooLargeError extends MoleculerClientError {
	constructor(message = "Request body too large", type = "PAYLOAD_TOO_LARGE") {
		super(message, 413, type);
		this.name = "PayloadTooLargeError";
	}
}

/** 415: a body in a media type, charset or content encoding the API does not take. */
export class UnsupportedMediaTypeError extends MoleculerClientError {
	constructor(message: string, type = "UNSUPPORTED_MEDIA_TYPE") {
		super(message, 415, type);
		this.name = "UnsupportedMediaTypeError";
	}
}

/**
 * 429 with the seconds after which trying again makes sense; `data.retryAfter` survives the
 * transporter (custom properties do not), and the gateway turns it into `Retry-After`.
 */
export class TooManyRequestsError extends MoleculerClientError {
	constructor(message: string, retryAfterS: number, type = "RATE_LIMITED") {
		super(message, 429, type, { retryAfter: Math.max(1, Math.ceil(retryAfterS)) });
		this.name = "RateLimitError";
	}
}

/** The seconds a 429 asks a client to wait, wherever the error was raised. */
export function retryAfterOf(err: any): number | undefined {
	const v = err?.data?.retryAfter ?? err?.retryAfter;
	return typeof v === "number" && Number.isFinite(v) && v > 0 ? Math.ceil(v) : undefined;
}

/**
 * Sequelize's connection failures (ConnectionError and its subclasses: refused, timed out, host
 * not found or unreachable, access denied, pool acquire timeout) and its lock timeout: the
 * database, not the request, is at fault.
 */
const DATABASE_HEALTH_ERRORS = /^Sequelize(Connection\w*|HostNotFound|HostNotReachable|AccessDenied|InvalidConnection|ConnectionAcquireTimeout|Timeout)Error$/;

/**
 * Whether an error says the service's database cannot be reached or is out of connections (a
 * Sequelize connection error, by name: the name survives the transporter, the class does not).
 * API.md: a dependency unavailable is a 503, not a 500.
 */
export function isDatabaseUnavailable(err: any): boolean {
	if (DATABASE_HEALTH_ERRORS.test(String(err?.name ?? ""))) return true;
	// A connection lost under a statement comes back as a SequelizeDatabaseError: PostgreSQL stopping
	// or restarting (SQLSTATE class 57P: "terminating connection due to administrator command", "the
	// database system is starting up / shutting down"), or the socket closed (pg: "Connection
	// terminated unexpectedly"). The message is what crosses the bus, so it is what is matched
	// (adversary finding: PostgreSQL crashed mid-burst gave 500s).
	return /^Sequelize\w*Error$/.test(String(err?.name ?? "")) && DATABASE_GONE.test(String(err?.message ?? ""));
}

/** Messages of a database connection lost under a statement (see isDatabaseUnavailable). */
const DATABASE_GONE = /terminating connection|connection terminated|the database system is (starting up|shutting down|in recovery)|server closed the connection|ECONNREFUSED|ECONNRESET|Connection is closed/i;

/**
 * The circuit breaker's `check` (moleculer.config.ts): does this failure say something about the
 * callee's health? (A remote call's own timeout gets here through RemoteCallDeadlineMiddleware,
 * lib/graceful.ts, 250 ms after the caller had it: Moleculer's Timeout middleware wraps the
 * breaker.) Only these count: a call that timed out, a callee that says itself that a
 * retry elsewhere or later makes sense (MoleculerRetryableError: its bulkhead is full, a
 * dependency of it is unavailable, the transporter failed) and a callee whose database cannot be
 * reached. Never a client error (any 4xx, a validation error, anything named a bad request) and
 * never a plain 500 — a bug triggered by one input says nothing about whether the next caller can
 * be served, and counting it would let one client open the breaker for everyone (issue 9). Nor
 * an action not (yet) registered where the call went (ServiceNotFoundError, ServiceNotAvailableError).
 */
export function countsAgainstHealth(err: any): boolean {
	if (!err) return false;
	if (err.name === "ValidationError" || err instanceof MoleculerClientError) return false;
	if (/bad.?request/i.test(`${err.type ?? ""} ${err.name ?? ""}`)) return false;
	if (err instanceof Errors.RequestTimeoutError || err.type === "REQUEST_TIMEOUT") return true;
	// No handler ran because the action is not registered there (yet): a node still starting its
	// services answers "not found on <node>". Counted, these trip a restarting node's breaker while
	// it starts, and keep it closed for the half-open time after it is ready (crash-recovery e2e).
	if (err instanceof Errors.ServiceNotFoundError || err instanceof Errors.ServiceNotAvailableError) return false;
	// Moleculer's own retryable errors include a full bulkhead (QueueIsFullError, 429): overload is health.
	if (err.retryable === true) return true;
	const code = Number(err.code);
	if (Number.isFinite(code) && code >= 400 && code < 500) return false;
	return DATABASE_HEALTH_ERRORS.test(String(err.name ?? ""));
}

/**
 * The broker's retry policy `check`: retry what never took effect and says a retry is safe
 * (retryable: no node, bulkhead full, transporter down — Moleculer marks these, some with 4xx
 * codes), never a timeout (the call may have taken effect; only callers holding an idempotency
 * key retry those) and never a client error of ours (MoleculerClientError is not retryable).
 */
export function isSafeToRetry(err: any): boolean {
	if (!err || err.retryable !== true || err instanceof MoleculerClientError) return false;
	return !(err instanceof Errors.RequestTimeoutError || err.type === "REQUEST_TIMEOUT");
}
