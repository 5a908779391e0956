/**
 * The public contract as OpenAPI 3.1, and the page that renders it.
 *
 * Requests come from the actions' own parameter schemas (fastest-validator), so the document
 * cannot drift from what the services validate; answers (status, schema, example) and summaries
 * from lib/api-contract.ts, which transcribes shared/API.md; access (public, signed in, customer,
 * admin with a role) from the actions' `auth` / `roles`, shown in each operation's summary.
 * CI validates the document against the official OpenAPI 3.1 schema
 * (@seriousme/openapi-schema-validator) and renders the page in headless Chromium.
 *
 * `/api/docs` is Swagger UI (swagger-ui-dist, served from the npm package by the gateway itself:
 * no CDN), with a plain list of the operations for clients without JavaScript.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CONTRACT, SCHEMAS } from "./api-contract";

type FvRule = string | Record<string, any> | FvRule[];

function fvToJsonSchema(rule: FvRule): Record<string, unknown> {
	if (Array.isArray(rule)) return { anyOf: rule.map(fvToJsonSchema) };
	const r: Record<string, any> = typeof rule === "string" ? parseShorthand(rule) : rule;
	const out: Record<string, unknown> = {};
	switch (r.type) {
		case "string":
		case "email":
		case "uuid":
		case "url":
			out.type = "string";
			if (r.type !== "string") out.format = r.type === "url" ? "uri" : r.type;
			if (r.min !== undefined) out.minLength = Number(r.min);
			if (r.max !== undefined) out.maxLength = Number(r.max);
			if (r.length !== undefined) out.minLength = out.maxLength = Number(r.length);
			if (r.pattern !== undefined) out.pattern = r.pattern instanceof RegExp ? r.pattern.source : String(r.pattern);
			break;
		case "number":
			out.type = r.integer ? "integer" : "number";
			if (r.min !== undefined) out.minimum = Number(r.min);
			if (r.max !== undefined) out.maximum = Number(r.max);
			// OpenAPI 3.1 (JSON Schema 2020-12): exclusiveMinimum is a number.
			if (r.positive) out.exclusiveMinimum = 0;
			break;
		case "boolean":
			out.type = "boolean";
			break;
		case "enum":
			out.enum = r.values;
			break;
		case "equal":
			out.const = r.value;
			break;
		case "array":
			out.type = "array";
			if (r.items) out.items = fvToJsonSchema(r.items);
			if (r.min !== undefined) out.minItems = Number(r.min);
			if (r.max !== undefined) out.maxItems = Number(r.max);
			if (r.unique) out.uniqueItems = true;
			break;
		case "object":
			Object.assign(out, r.props || r.properties ? objectSchema(r.props ?? r.properties) : { type: "object" });
			break;
		case "multi":
			if (Array.isArray(r.rules)) out.anyOf = r.rules.map(fvToJsonSchema);
			break;
		default:
			break;
	}
	if (r.nullable) return { anyOf: [out, { type: "null" }] };
	if (r.default !== undefined && typeof r.default !== "function") out.default = r.default;
	return out;
}

function parseShorthand(s: string): Record<string, any> {
	const [type, ...mods] = s.split("|");
	const r: Record<string, any> = { type: type.replace(/\?$/, "") };
	for (const m of mods) {
		const i = m.indexOf(":");
		if (i < 0) r[m] = true;
		else r[m.slice(0, i)] = m.slice(i + 1);
	}
	return r;
}

function isOptional(rule: FvRule): boolean {
	if (Array.isArray(rule)) return rule.every(isOptional);
	if (typeof rule === "string") return /\|optional\b/.test(rule) || rule.split("|")[0].endsWith("?");
	return Boolean(rule.optional || rule.default !== undefined);
}

function objectSchema(props: Record<string, FvRule>): Record<string, unknown> {
	const properties: Record<string, unknown> = {};
	const required: string[] = [];
	for (const [name, rule] of Object.entries(props)) {
		if (name.startsWith("$$")) continue;
		properties[name] = fvToJsonSchema(rule);
		if (!isOptional(rule)) required.push(name);
	}
	return { type: "object", properties, ...(required.length ? { required } : {}), additionalProperties: false };
}

const ERROR_SCHEMA = {
	type: "object",
	required: ["name", "message", "code", "type"],
	properties: {
		name: { type: "string" },
		message: { type: "string" },
		code: { type: "integer", description: "equals the HTTP status" },
		type: { type: "string", description: "stable, machine-readable (UPPER_SNAKE)" },
		data: { type: "array", items: { type: "object", properties: { field: { type: "string" }, message: { type: "string" } } } },
	},
	example: { name: "ValidationError", message: "Parameters validation error!", code: 422, type: "VALIDATION_ERROR", data: [{ field: "quantity", message: "must be 1..99" }] },
};

const ERROR_STATUS: Record<string, string> = {
	"400": "Malformed JSON or a missing required header",
	"401": "No, invalid or expired token",
	"403": "Signed in, but not allowed",
	"404": "Not found (also another customer's object)",
	"409": "The object's state does not allow it",
	"413": "Body too large",
	"415": "Body is not JSON",
	"422": "Validation failed",
	"429": "Rate limited (see Retry-After)",
	"503": "A service it needs is unavailable (see Retry-After)",
};

/** Examples of request bodies clients ask for first (API.md). */
const REQUEST_EXAMPLES: Record<string, unknown> = {
	"auth.register": { email: "jane@example.com", password: "correct-horse-battery", firstName: "Jane", lastName: "Doe" },
	"auth.login": { email: "jane@example.com", password: "correct-horse-battery" },
	"cart.addItem": { productId: "81fcadf7-5f28-5ab6-ac68-875def94134b", quantity: 2 },
	"orders.create": { shippingAddress: { line1: "1 Main St", city: "Springfield", postalCode: "12345", country: "US" }, shippingMethod: "standard", paymentToken: "tok_visa" },
	"users.create": { email: "ops@example.com", password: "a-long-admin-password", name: "Ops", roles: ["ops"] },
};

/** Who may call an operation, as the summary shows it: `public`, `signed in`, `customer`, `admin`, `admin (catalog)`. */
export function accessLabel(action: { auth?: string; roles?: string[] } | undefined): string {
	const auth = action?.auth ?? "any";
	if (auth === "public") return "public";
	if (auth === "any") return "signed in";
	return action?.roles?.length ? `${auth} (${action.roles.join(" or ")})` : auth;
}

function errorResponses(codes: string[]): Record<string, unknown> {
	return Object.fromEntries(codes.map(c => [c, { description: ERROR_STATUS[c], content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } }]));
}

export function buildOpenApi(routes: Record<string, string>, actionOf: (name: string) => any): Record<string, unknown> {
	const paths: Record<string, Record<string, unknown>> = {};
	for (const [route, actionName] of Object.entries(routes)) {
		const [method, path] = route.split(" ");
		const oaPath = "/api/v1" + path.replace(/:(\w+)/g, "{$1}");
		const pathParams = [...path.matchAll(/:(\w+)/g)].map(m => m[1]);
		const action = actionOf(actionName);
		const contract = CONTRACT[actionName];
		const params: Record<string, FvRule> = { ...(action?.params ?? {}) };
		const access = accessLabel(action);
		const op: Record<string, any> = {
			operationId: actionName,
			tags: [actionName.split(".")[0]],
			summary: `${contract?.summary ?? actionName} — ${access}`,
			description: access === "public" ? "Access: public (no token)." : `Access: ${access}. Send \`Authorization: Bearer <accessToken>\`.`,
			"x-access": access,
			parameters: pathParams.map(p => ({ name: p, in: "path", required: true, schema: params[p] ? fvToJsonSchema(params[p]) : { type: "string" } })),
		};
		for (const p of pathParams) delete params[p];
		if (access !== "public") op.security = [{ bearer: [] }];
		const bodyless = method === "GET" || method === "DELETE";
		if (bodyless) {
			for (const [name, rule] of Object.entries(params)) {
				if (name.startsWith("$$")) continue;
				op.parameters.push({ name, in: "query", required: !isOptional(rule), schema: fvToJsonSchema(rule) });
			}
		} else if (Object.keys(params).length) {
			const schema = objectSchema(params);
			const example = REQUEST_EXAMPLES[actionName];
			op.requestBody = { required: ((schema.required as string[]) ?? []).length > 0, content: { "application/json": { schema, ...(example ? { example } : {}) } } };
		}
		if (actionName === "orders.create") {
			op.parameters.push({ name: "Idempotency-Key", in: "header", required: true, description: "1..255 characters, scoped to the caller: the same key and body replay the first answer", schema: { type: "string", minLength: 1, maxLength: 255 } });
		}
		const status = String(contract?.status ?? 200);
		const success: Record<string, unknown> =
			status === "204" || !contract?.schema
				? { description: status === "204" ? "Done, no body" : "OK" }
				: { description: status === "201" ? "Created" : "OK", content: { "application/json": { schema: contract.schema } } };
		if (status === "201" && contract?.location) success.headers = { Location: { description: "Where the created resource is read", schema: { type: "string" } } };
		const also = Object.fromEntries(Object.entries(contract?.also ?? {}).map(([code, a]) => [code, { description: a.description, ...(a.schema ? { content: { "application/json": { schema: a.schema } } } : {}) }]));
		const errors = [
			...(bodyless ? [] : ["400", "413", "415"]),
			...(access !== "public" ? ["401"] : []),
			...(access.includes("(") || access === "admin" || access === "customer" ? ["403"] : []),
			...(pathParams.length ? ["404"] : []),
			...(Object.keys(params).length || pathParams.length ? ["422"] : []),
			"429",
			"503",
		];
		op.responses = { [status]: success, ...also, ...errorResponses(errors) };
		paths[oaPath] ??= {};
		paths[oaPath][method.toLowerCase()] = op;
	}
	return {
		openapi: "3.1.0",
		info: {
			title: "moleculer-commerce public API",
			version: "1.0.0",
			description:
				"The REST contract of shared/API.md. Money is an integer of minor units with an ISO 4217 currency; lists answer `{ items, total, page, pageSize }`; errors have one shape (Error). Each operation's summary ends with who may call it.",
		},
		servers: [{ url: "/" }],
		components: { securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } }, schemas: { Error: ERROR_SCHEMA, ...SCHEMAS } },
		paths,
	};
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, ch => `&#${ch.charCodeAt(0)};`);

/** The assets of /api/docs: Swagger UI's own files from the npm package, and our start-up script. */
const SWAGGER_UI_DIR = join(require.resolve("swagger-ui-dist/package.json"), "..");
const INIT_SCRIPT = `window.addEventListener("load", function () {
	window.ui = SwaggerUIBundle({ url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true, docExpansion: "list", defaultModelsExpandDepth: 0, displayOperationId: true, tryItOutEnabled: false, persistAuthorization: false });
});
`;
const ASSETS: Record<string, { file?: string; body?: string; type: string }> = {
	"swagger-ui.css": { file: "swagger-ui.css", type: "text/css; charset=utf-8" },
	"swagger-ui-bundle.js": { file: "swagger-ui-bundle.js", type: "application/javascript; charset=utf-8" },
	"docs-init.js": { body: INIT_SCRIPT, type: "application/javascript; charset=utf-8" },
};
const assetCache = new Map<string, Buffer>();

/** One asset of the docs page by name (a fixed list: no path from the request reaches the file system). */
export function docsAsset(name: string): { body: Buffer; type: string } | undefined {
	const asset = ASSETS[name];
	if (!asset) return undefined;
	let body = assetCache.get(name);
	if (!body) {
		body = asset.body !== undefined ? Buffer.from(asset.body) : readFileSync(join(SWAGGER_UI_DIR, asset.file!));
		assetCache.set(name, body);
	}
	return { body, type: asset.type };
}

/** The docs page's Content-Security-Policy: its own scripts only; Swagger UI sets inline styles. */
export const DOCS_CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/** Swagger UI over /api/openapi.json, and a plain list of the operations without JavaScript. */
export function renderDocsPage(spec: any): string {
	const rows = Object.entries(spec.paths as Record<string, Record<string, any>>)
		.flatMap(([path, ops]) => Object.entries(ops).map(([m, op]) => ({ path, m: m.toUpperCase(), op })))
		.sort((a, b) => a.op.tags[0].localeCompare(b.op.tags[0]) || a.path.localeCompare(b.path));
	const list = rows.map(r => `<li><code>${r.m} ${escapeHtml(r.path)}</code> ${escapeHtml(r.op.summary ?? "")}</li>`).join("\n");
	return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(spec.info.title)}</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head><body>
<div id="swagger-ui"></div>
<noscript><h1>${escapeHtml(spec.info.title)}</h1><p>Machine-readable contract: <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI ${escapeHtml(spec.openapi)}).</p><ul>
${list}
</ul></noscript>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/docs-init.js"></script>
</body></html>`;
}
