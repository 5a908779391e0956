/**
 * The gateway's request-body reader, in place of moleculer-web's body parsers: it turns whatever
 * bytes a client sends into either a JSON object or a typed 4xx (lib/errors.ts) in API.md's
 * error shape — never a 500, never a stack trace in the log, never a value other than the one
 * sent.
 *
 * - Media type: `application/json` or `application/*+json` (else 415 UNSUPPORTED_MEDIA_TYPE);
 *   `charset`, if given, must be UTF-8 (else 415 UNSUPPORTED_CHARSET).
 * - Content-Encoding: none/identity, gzip, deflate or br, one of them (else 415
 *   UNSUPPORTED_CONTENT_ENCODING); a body that is not what its encoding says, or is cut short, is
 *   400 INVALID_CONTENT_ENCODING. The limit applies to the bytes received and to the bytes after
 *   decompression (413 PAYLOAD_TOO_LARGE), so no small body inflates into a large one.
 * - Text: strict UTF-8 (400 INVALID_UTF8 instead of silently replacing bytes).
 * - JSON as I-JSON (RFC 7493): well-formed (400 INVALID_JSON), numbers that parse to what was sent
 *   (422: not 1e400, which becomes Infinity, nor integers beyond 2^53, nor `1.0000000000000001` or
 *   `1e-400`, which become the whole numbers 1 and 0), no duplicate member names (400
 *   DUPLICATE_JSON_KEY), nested at most `maxDepth` levels (400 JSON_TOO_DEEP: a deep body breaks
 *   serializers, tracers and transporters further on), an object at the top (422), and no
 *   `__proto__`/`constructor` member anywhere (422 VALIDATION_ERROR, as any unknown field; the
 *   gateway's merge of body into params would otherwise assign a prototype).
 *
 * raw-body reads the stream with its limit; node:zlib decompresses with `maxOutputLength`.
 */
import type { IncomingMessage } from "node:http";
import { promisify } from "node:util";
import zlib from "node:zlib";
import { parse as parseContentType } from "content-type";
import getRawBody from "raw-body";
import { BadRequestError, PayloadTooLargeError, UnprocessableError, UnsupportedMediaTypeError } from "./errors";
import { FORBIDDEN_KEYS } from "./text";

export interface BodyOptions {
	/** Largest body in bytes, compressed and decompressed alike. */
	limitBytes: number;
	/** Deepest nesting of objects and arrays. */
	maxDepth: number;
}

const DECOMPRESS: Record<string, (buf: Buffer, opts: zlib.ZlibOptions | zlib.BrotliOptions) => Promise<Buffer>> = {
	gzip: promisify(zlib.gunzip),
	"x-gzip": promisify(zlib.gunzip),
	deflate: promisify(zlib.inflate),
	br: promisify(zlib.brotliDecompress),
};

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json$/i;

/** `<n>kb` / `<n>mb` (config BODY_LIMIT) in bytes. */
export function parseByteSize(size: string): number {
	const m = /^(\d+)(kb|mb)$/i.exec(size.trim());
	if (!m) throw new Error(`not a size: ${size}`);
	return Number(m[1]) * (m[2].toLowerCase() === "kb" ? 1024 : 1024 * 1024);
}

/** True when the request carries a body (RFC 9112 §6.3: a Content-Length above 0 or a Transfer-Encoding). */
export function hasBody(req: IncomingMessage): boolean {
	return req.headers["transfer-encoding"] !== undefined || (req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0");
}

/** Checks the media type and charset of a request with a body; throws 415 when they are not JSON in UTF-8. */
export function checkMediaType(req: IncomingMessage): void {
	let parsed: { type: string; parameters: Record<string, string> };
	try {
		parsed = parseContentType(String(req.headers["content-type"] ?? ""));
	} catch {
		throw new UnsupportedMediaTypeError("Request body must be application/json");
	}
	if (!JSON_TYPE.test(parsed.type)) throw new UnsupportedMediaTypeError("Request body must be application/json");
	const charset = parsed.parameters.charset?.toLowerCase();
	if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
		throw new UnsupportedMediaTypeError(`Unsupported charset "${charset.slice(0, 40)}"; send UTF-8`, "UNSUPPORTED_CHARSET");
	}
}

/** The decoded body text, or a typed 4xx. */
export async function readBodyText(req: IncomingMessage, opts: BodyOptions): Promise<string> {
	const encoding = String(req.headers["content-encoding"] ?? "identity").trim().toLowerCase();
	const decompress = encoding === "identity" || encoding === "" ? undefined : DECOMPRESS[encoding];
	if (!decompress && encoding !== "identity" && encoding !== "") {
		throw new UnsupportedMediaTypeError(`Unsupported Content-Encoding "${encoding.slice(0, 40)}"; use gzip, deflate, br or none`, "UNSUPPORTED_CONTENT_ENCODING");
	}
	let raw: Buffer;
	try {
		const length = req.headers["content-length"];
		raw = await getRawBody(req, { limit: opts.limitBytes, length: length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined });
	} catch (err: any) {
		if (err?.type === "entity.too.large") throw new PayloadTooLargeError();
		if (err?.type === "request.size.invalid") throw new BadRequestError("The body's length does not match Content-Length", "INVALID_CONTENT_LENGTH");
		throw new BadRequestError("The request body could not be read", "REQUEST_ABORTED");
	}
	let bytes = raw;
	if (decompress) {
		try {
			bytes = await decompress(raw, { maxOutputLength: opts.limitBytes });
		} catch (err: any) {
			if (err?.code === "ERR_BUFFER_TOO_LARGE" || err instanceof RangeError) throw new PayloadTooLargeError("Request body too large once decompressed");
			throw new BadRequestError(`The body is not valid ${encoding} data`, "INVALID_CONTENT_ENCODING");
		}
	}
	try {
		return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
	} catch {
		throw new BadRequestError("The body is not valid UTF-8", "INVALID_UTF8");
	}
}

interface Frame {
	kind: "object" | "array";
	path: string;
	keys?: Set<string>;
	expectKey: boolean;
	lastKey: string;
	index: number;
}

const childPath = (f: Frame) => (f.kind === "array" ? `${f.path}[${f.index}]` : f.path ? `${f.path}.${f.lastKey}` : f.lastKey);

/**
 * One linear pass over JSON text, before it is parsed: depth, duplicate member names and
 * forbidden member names. Text that is not JSON passes here and fails in JSON.parse.
 */
export function checkJsonStructure(text: string, maxDepth: number): void {
	const stack: Frame[] = [];
	for (let i = 0; i < text.length; i++) {
		const ch = text.charCodeAt(i);
		if (ch === 34 /* " */) {
			let j = i + 1;
			while (j < text.length && text.charCodeAt(j) !== 34) j += text.charCodeAt(j) === 92 /* \ */ ? 2 : 1;
			const top = stack[stack.length - 1];
			if (top?.kind === "object" && top.expectKey) {
				let key: string;
				try {
					key = JSON.parse(text.slice(i, j + 1));
				} catch {
					return; // malformed: JSON.parse reports it
				}
				const field = top.path ? `${top.path}.${key}` : key;
				if (FORBIDDEN_KEYS.has(key)) throw new UnprocessableError(`Unknown field(s): ${field}`, "VALIDATION_ERROR", [{ field, message: `Unknown field(s): ${field}` }]);
				if (top.keys!.has(key)) throw new BadRequestError(`Duplicate member "${field.slice(0, 100)}" in the JSON body`, "DUPLICATE_JSON_KEY");
				top.keys!.add(key);
				top.lastKey = key;
				top.expectKey = false;
			}
			i = j;
			continue;
		}
		if (ch === 123 /* { */ || ch === 91 /* [ */) {
			const parent = stack[stack.length - 1];
			const path = parent ? childPath(parent) : "";
			if (stack.length >= maxDepth) throw new BadRequestError(`The JSON body is nested more than ${maxDepth} levels deep`, "JSON_TOO_DEEP");
			stack.push(ch === 123 ? { kind: "object", path, keys: new Set(), expectKey: true, lastKey: "", index: 0 } : { kind: "array", path, expectKey: false, lastKey: "", index: 0 });
		} else if (ch === 125 /* } */ || ch === 93 /* ] */) {
			stack.pop();
		} else if (ch === 44 /* , */) {
			const top = stack[stack.length - 1];
			if (top?.kind === "object") top.expectKey = true;
			else if (top) top.index++;
		}
	}
}

/**
 * True when a number's text is not a whole number but parses to one: `1.0000000000000001` and
 * `0.99999999999999999` become 1, `1e-400` becomes 0, and an integer field (a quantity, an amount
 * in cents) would take a value that was not sent. `1.0`, `1.5e1` and `2e2` are whole as written.
 */
export function roundedToWhole(value: number, source: string | undefined): boolean {
	if (!Number.isInteger(value) || source === undefined) return false;
	const m = /^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(source);
	if (!m || (m[2] === undefined && m[3] === undefined)) return false;
	const digits = m[1] + (m[2] ?? "");
	const point = m[1].length + Number(m[3] ?? 0);
	return /[1-9]/.test(point <= 0 ? digits : digits.slice(point));
}

/** Text that may hold a number a double cannot hold as written (conservative: strings match too). */
const RISKY_NUMBER = /\d\.?[eE]|(?:\d\.?){16}/;

/** Parses JSON text under the rules above into the object the request's params are made of. */
export function parseJsonBody(text: string, maxDepth: number): Record<string, unknown> | undefined {
	if (text.trim() === "") return undefined;
	checkJsonStructure(text, maxDepth);
	let value: unknown;
	let inexact: string | undefined;
	// I-JSON (RFC 7493 §2.2): a number a double cannot hold (1e400 becomes Infinity, which a
	// transporter then sends as null) or an integer it cannot hold exactly would be a different value
	// from the one sent. The reviver sees each number with its source text (ES2025 JSON.parse source text access).
	const reviver = (key: string, v: unknown, context?: { source?: string }) => {
		if (typeof v === "number" && inexact === undefined && (!Number.isFinite(v) || (!Number.isSafeInteger(v) && /^-?\d+$/.test(context?.source ?? "")) || roundedToWhole(v, context?.source))) inexact = key;
		return v;
	};
	try {
		// The reviver (much slower than a plain parse) only where a number could be inexact: one with
		// an exponent or 16 and more digits. A number of at most 15 significant digits and no exponent
		// is held by a double exactly enough to read back as written, so it can be none of the above.
		value = RISKY_NUMBER.test(text) ? JSON.parse(text, reviver as (key: string, v: unknown) => unknown) : JSON.parse(text);
	} catch {
		throw new BadRequestError("Malformed JSON body", "INVALID_JSON");
	}
	if (inexact !== undefined) {
		const field = inexact || "body";
		throw new UnprocessableError(`${field} must be a number this API can hold exactly`, "VALIDATION_ERROR", [{ field, message: "must be a finite number, and an integer within ±9007199254740991" }]);
	}
	if (value === null || typeof value !== "object" || Array.isArray(value)) {
		throw new UnprocessableError("The request body must be a JSON object", "VALIDATION_ERROR", [{ field: "body", message: "must be a JSON object" }]);
	}
	return value as Record<string, unknown>;
}

/** Reads, decodes and parses a JSON request body; `undefined` when there is none. */
export async function readJsonBody(req: IncomingMessage, opts: BodyOptions): Promise<Record<string, unknown> | undefined> {
	if (!hasBody(req)) return undefined;
	checkMediaType(req);
	return parseJsonBody(await readBodyText(req, opts), opts.maxDepth);
}
