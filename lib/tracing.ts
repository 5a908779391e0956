/**
 * What a span records (moleculer.config.ts `tracing`): for every action and event, its params and
 * a few meta fields with every declared secret redacted, plus the ids that tie a checkout's spans
 * together (`orderId`, `sagaId`). Responses are never recorded (login and refresh answer tokens),
 * nor error `data` (validation errors carry the refused value, e.g. a password).
 *
 * Redaction is by declaration: `SECRET_FIELDS` names the fields that hold credentials anywhere in
 * the platform, applied to every action and event at any depth; an action may declare more with
 * `secretParams: ["field"]` next to its `params`.
 * test/unit/platform/tracing-redaction.spec.ts checks that every action param that looks like a
 * credential is covered.
 */
import type { Context } from "moleculer";

/** Field names whose values are credentials, wherever they appear (params, meta, nested objects). */
export const SECRET_FIELDS: ReadonlySet<string> = new Set(
	["password", "newPassword", "currentPassword", "oldPassword", "refreshToken", "accessToken", "token", "idToken", "paymentToken", "secret", "clientSecret", "apiKey", "authorization", "cookie", "jwt"].map(f => f.toLowerCase()),
);

export const REDACTED = "[redacted]";

/** Meta fields worth seeing on a span; the rest (headers, tokens a gateway may put there) stay out. */
const META_FIELDS = ["idempotencyKey", "$statusCode"];
const MAX_DEPTH = 4;
const MAX_STRING = 200;
const MAX_KEYS = 50;

const SAGA_KEY = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):/i;

function isPlain(value: unknown): value is Record<string, unknown> {
	if (value === null || typeof value !== "object") return false;
	const proto = Object.getPrototypeOf(value);
	return proto === Object.prototype || proto === null;
}

/** A JSON-safe copy with every secret field replaced, long strings cut, non-plain objects dropped. */
export function redact(value: unknown, extra: ReadonlySet<string> = new Set(), depth = 0): unknown {
	if (value === null || value === undefined) return value;
	if (typeof value === "string") return value.length > MAX_STRING ? `${value.slice(0, MAX_STRING)}…` : value;
	if (typeof value === "number" || typeof value === "boolean") return value;
	if (depth >= MAX_DEPTH) return "[…]";
	if (Array.isArray(value)) return value.slice(0, MAX_KEYS).map(v => redact(v, extra, depth + 1));
	if (!isPlain(value)) return undefined;
	const out: Record<string, unknown> = {};
	for (const key of Object.keys(value).slice(0, MAX_KEYS)) {
		const k = key.toLowerCase();
		out[key] = SECRET_FIELDS.has(k) || extra.has(k) ? REDACTED : redact(value[key], extra, depth + 1);
	}
	return out;
}

/** The order and saga a call belongs to: from its params, its idempotency key (`<sagaId>:<step>`) or its answer. */
export function correlationIds(params: any, meta: any, res?: any): Record<string, string> {
	const ids: Record<string, string> = {};
	const orderId = params?.orderId ?? res?.orderId ?? (typeof res?.number === "string" || typeof res?.number === "number" ? res?.id : undefined);
	if (typeof orderId === "string") ids.orderId = orderId;
	const key = typeof params?.idempotencyKey === "string" ? params.idempotencyKey : meta?.sagaId;
	const m = typeof key === "string" ? SAGA_KEY.exec(key) : null;
	if (m) ids.sagaId = m[1];
	if (typeof params?.sagaId === "string") ids.sagaId = params.sagaId;
	return ids;
}

function declaredSecrets(ctx: Context): ReadonlySet<string> {
	const declared = (ctx.action as any)?.secretParams;
	return Array.isArray(declared) ? new Set(declared.map((f: string) => f.toLowerCase())) : new Set();
}

/** Moleculer `tracing.tags.action` / `.event`: called at span start (no `res`) and at its end. */
export function spanTags(this: unknown, ctx: Context, res?: unknown): Record<string, unknown> {
	if (arguments.length > 1) return correlationIds(ctx.params, ctx.meta, res);
	const meta: Record<string, unknown> = {};
	const m = (ctx.meta ?? {}) as Record<string, unknown>;
	for (const f of META_FIELDS) if (m[f] !== undefined) meta[f] = m[f];
	const user = m.user as { id?: string; typ?: string } | undefined;
	if (user?.id) meta.user = { id: user.id, typ: user.typ };
	return { params: redact(ctx.params, declaredSecrets(ctx)), meta, ...correlationIds(ctx.params, ctx.meta) };
}

/** Error fields exported on a span: `data` is left out (validation errors echo the refused value). */
export const SPAN_ERROR_FIELDS = ["name", "message", "code", "type"];
