/**
 * Every error a client sees has one shape (shared/API.md), never a stack trace:
 * `{ name, message, code, type, data }` with `code` equal to the HTTP status and `type` a stable
 * UPPER_SNAKE string. Errors of the platform, of Moleculer, of moleculer-web and of the body
 * reading libraries (raw-body, zlib, body-parser) all come through here.
 */
import { isDatabaseUnavailable } from "./errors";

export interface ErrorBody {
	name: string;
	message: string;
	code: number;
	type: string;
	data?: unknown;
}

const UNAVAILABLE_TYPES = new Set([
	"SERVICE_NOT_FOUND",
	"SERVICE_NOT_AVAILABLE",
	"REQUEST_TIMEOUT",
	"QUEUE_FULL",
	"REQUEST_SKIPPED",
	"BAD_GATEWAY",
	"SERVICE_UNAVAILABLE",
]);

const CLIENT_TYPES: Record<number, [string, string]> = {
	400: ["BadRequestError", "BAD_REQUEST"],
	401: ["UnauthorizedError", "UNAUTHORIZED"],
	403: ["ForbiddenError", "FORBIDDEN"],
	404: ["NotFoundError", "NOT_FOUND"],
	405: ["MethodNotAllowedError", "METHOD_NOT_ALLOWED"],
	409: ["ConflictError", "CONFLICT"],
	413: ["PayloadTooLargeError", "PAYLOAD_TOO_LARGE"],
	415: ["UnsupportedMediaTypeError", "UNSUPPORTED_MEDIA_TYPE"],
	422: ["ValidationError", "VALIDATION_ERROR"],
	429: ["RateLimitError", "RATE_LIMITED"],
};

/**
 * Errors of the body-reading libraries (raw-body / body-parser `type`s, zlib `code`s): what they
 * mean to a client. Anything a client's bytes can cause is a 4xx.
 */
const BODY_ERRORS: Record<string, [number, string, string]> = {
	"entity.parse.failed": [400, "INVALID_JSON", "Malformed JSON body"],
	"entity.too.large": [413, "PAYLOAD_TOO_LARGE", "Request body too large"],
	"entity.verify.failed": [400, "INVALID_BODY", "The request body was refused"],
	"encoding.unsupported": [415, "UNSUPPORTED_CONTENT_ENCODING", "Unsupported Content-Encoding"],
	"charset.unsupported": [415, "UNSUPPORTED_CHARSET", "Unsupported charset; send UTF-8"],
	"request.aborted": [400, "REQUEST_ABORTED", "The request body ended early"],
	"request.size.invalid": [400, "INVALID_CONTENT_LENGTH", "The body's length does not match Content-Length"],
	INVALID_REQUEST_BODY: [400, "INVALID_JSON", "Malformed JSON body"],
	Z_DATA_ERROR: [400, "INVALID_CONTENT_ENCODING", "The body is not valid for its Content-Encoding"],
	Z_BUF_ERROR: [400, "INVALID_CONTENT_ENCODING", "The body is not valid for its Content-Encoding"],
	// moleculer-web's path decoding (`/products/%E0%A4%A`): named as the query's twin (lib/http-edge.ts), without echoing the text.
	UNABLE_DECODE_PARAM: [400, "BAD_PATH_ENCODING", "The path is not valid percent-encoded UTF-8"],
};

/** `type` values are UPPER_SNAKE (API.md); a library's `charset.unsupported` becomes `CHARSET_UNSUPPORTED`. */
export function upperSnake(type: string): string {
	return /^[A-Z][A-Z0-9_]*$/.test(type) ? type : type.replace(/[^A-Za-z0-9]+/g, "_").replace(/^_+|_+$/g, "").toUpperCase() || "ERROR";
}

function validationData(data: unknown): { field: string; message: string }[] {
	if (!Array.isArray(data)) return [];
	return data.map((d: any) =>
		d?.type === "objectStrict"
			? { field: String(d.field && d.field !== "$$root" ? d.field : (d.actual ?? "")), message: String(d.message ?? `Unknown field(s): ${d.actual}`) }
			: { field: String(d?.field ?? ""), message: String(d?.message ?? "invalid") },
	);
}

/** The HTTP status an error stands for: a numeric `code`, else `status`/`statusCode` (http-errors), else 500. */
function statusOf(err: any): number {
	for (const v of [err?.code, err?.status, err?.statusCode]) {
		const n = typeof v === "number" ? v : typeof v === "string" && /^\d{3}$/.test(v) ? Number(v) : NaN;
		if (n >= 400 && n <= 599) return n;
	}
	return 500;
}

/** Maps any error (Moleculer, moleculer-web, body reading, ours) to the public shape. */
export function toErrorBody(err: any): ErrorBody {
	const type: string | undefined = typeof err?.type === "string" ? err.type : undefined;

	const body = BODY_ERRORS[type ?? ""] ?? BODY_ERRORS[String(err?.code ?? "")];
	if (body) return { name: CLIENT_TYPES[body[0]]?.[0] ?? "BadRequestError", message: body[2], code: body[0], type: body[1] };

	// An action whose service is down, timing out, shedding load or behind an open breaker.
	if (type && UNAVAILABLE_TYPES.has(type)) {
		return { name: "ServiceUnavailableError", message: "A service this request needs is unavailable, try again shortly", code: 503, type: type === "REQUEST_TIMEOUT" ? "SERVICE_TIMEOUT" : "SERVICE_UNAVAILABLE" };
	}
	// A database out of connections or unreachable (Sequelize connection errors, e.g. PostgreSQL's
	// "sorry, too many clients already"): a dependency unavailable, 503 with Retry-After (API.md).
	if (isDatabaseUnavailable(err)) return { name: "ServiceUnavailableError", message: "A service this request needs is unavailable, try again shortly", code: 503, type: "DATABASE_UNAVAILABLE" };
	let code = statusOf(err);
	if (code === 503) return { name: "ServiceUnavailableError", message: err.message || "Service unavailable", code: 503, type: upperSnake(type ?? "SERVICE_UNAVAILABLE") };

	if (code === 422 || (code < 500 && err?.name === "ValidationError")) {
		const data = validationData(err?.data);
		const detail = data.length ? `: ${data.map(d => d.message).join("; ")}` : "";
		return { name: "ValidationError", message: err?.message && err.message !== "Parameters validation error!" ? err.message : `Invalid request${detail}`, code: 422, type: upperSnake(type ?? "VALIDATION_ERROR"), data };
	}
	if (code >= 400 && code < 500) {
		if (code === 401 && (type === "NO_TOKEN" || type === "INVALID_TOKEN")) code = 401;
		const [name, fallbackType] = CLIENT_TYPES[code] ?? ["ClientError", "CLIENT_ERROR"];
		const body: ErrorBody = { name: err?.name && err.name !== "MoleculerClientError" && err.name !== "MoleculerError" && err.name !== "Error" ? err.name : name, message: err?.message || name, code, type: upperSnake(type ?? fallbackType) };
		// 404s say nothing more; a 429's data is its Retry-After, sent as that header.
		if (err?.data !== undefined && code !== 404 && code !== 429 && isPlainData(err.data)) body.data = err.data;
		return body;
	}
	return { name: "InternalServerError", message: "Something went wrong on our side; the request id identifies it in the logs", code: 500, type: "INTERNAL_ERROR" };
}

/** Only JSON-safe data crosses to a client; a library's internal object (a request, a socket) does not. */
function isPlainData(data: unknown): boolean {
	if (data === null || typeof data !== "object") return true;
	const proto = Object.getPrototypeOf(data);
	return Array.isArray(data) || proto === Object.prototype || proto === null;
}
