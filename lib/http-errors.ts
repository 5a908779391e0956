/**
 * Every error a client sees has one shape (shared/API.md), never a stack trace:
 * `{ name, message, code, type, data }` with `code` equal to the HTTP status.
 */
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

function validationData(data: unknown): { field: string; message: string }[] {
	if (!Array.isArray(data)) return [];
	return data.map((d: any) =>
		d?.type === "objectStrict"
			? { field: String(d.actual ?? ""), message: `Unknown field(s): ${d.actual}` }
			: { field: String(d?.field ?? ""), message: String(d?.message ?? "invalid") },
	);
}

/** Maps any error (Moleculer, moleculer-web, body parser, ours) to the public shape. */
export function toErrorBody(err: any): ErrorBody {
	const type: string | undefined = err?.type;
	let code: number = Number(err?.code ?? err?.status ?? err?.statusCode) || 500;

	// An action whose service is down, timing out, shedding load or behind an open breaker.
	if (type && UNAVAILABLE_TYPES.has(type)) {
		return { name: "ServiceUnavailableError", message: "A service this request needs is unavailable, try again shortly", code: 503, type: type === "REQUEST_TIMEOUT" ? "SERVICE_TIMEOUT" : "SERVICE_UNAVAILABLE" };
	}
	if (code === 503) return { name: "ServiceUnavailableError", message: err.message || "Service unavailable", code: 503, type: type ?? "SERVICE_UNAVAILABLE" };

	// body-parser's own errors
	if (err?.type === "entity.parse.failed") return { name: "BadRequestError", message: "Malformed JSON body", code: 400, type: "INVALID_JSON" };
	if (err?.type === "entity.too.large") return { name: "PayloadTooLargeError", message: "Request body too large", code: 413, type: "PAYLOAD_TOO_LARGE" };
	if (type === "INVALID_REQUEST_BODY") return { name: "BadRequestError", message: "Malformed JSON body", code: 400, type: "INVALID_JSON" };

	if (code === 422 || err?.name === "ValidationError") {
		const data = validationData(err?.data);
		const detail = data.length ? `: ${data.map(d => d.message).join("; ")}` : "";
		return { name: "ValidationError", message: err?.message && err.message !== "Parameters validation error!" ? err.message : `Invalid request${detail}`, code: 422, type: type ?? "VALIDATION_ERROR", data };
	}
	if (code >= 400 && code < 500) {
		if (code === 401 && (type === "NO_TOKEN" || type === "INVALID_TOKEN")) code = 401;
		const [name, fallbackType] = CLIENT_TYPES[code] ?? ["ClientError", "CLIENT_ERROR"];
		const body: ErrorBody = { name: err?.name && err.name !== "MoleculerClientError" && err.name !== "MoleculerError" ? err.name : name, message: err?.message || name, code, type: type ?? fallbackType };
		if (err?.data !== undefined && code !== 404) body.data = err.data;
		return body;
	}
	return { name: "InternalServerError", message: "Something went wrong on our side; the request id identifies it in the logs", code: 500, type: "INTERNAL_ERROR" };
}
