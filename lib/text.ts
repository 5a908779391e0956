/**
 * What the platform refuses in any text a client sends, wherever it arrives (path, query, body,
 * header-derived values): pure predicates shared by the parameter validator, the body parser and
 * the email rules.
 *
 * - Control characters: C0 (U+0000–U+001F) except tab, line feed and carriage return, DEL
 *   (U+007F) and C1 (U+0080–U+009F). A NUL makes SQLite fail and PostgreSQL store something else
 *   than what was sent; the others have no place in shop data either.
 * - Lone surrogates (RFC 7493, I-JSON §2.1: strings MUST NOT contain them): they cannot be encoded
 *   as UTF-8, so a database would store U+FFFD instead of what was sent.
 * - Keys that reach an object's prototype when assigned (`__proto__`, `constructor`): refused as
 *   unknown fields so that nothing merges them into a prototype.
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/;

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Invisible and layout-changing characters (Unicode general category Cf and separators other than
 * the ASCII space): zero-width space and joiners, BOM, soft hyphen, bidirectional controls, line
 * and paragraph separators. Refused where a value must be what it looks like (emails).
 */
const INVISIBLE = /[\p{Cf}\u2028\u2029\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000]/u;

export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(["__proto__", "constructor"]);

/** Why a string cannot be accepted as sent, or null when it can. */
export function textProblem(s: string): string | null {
	const control = CONTROL.exec(s);
	if (control) return `must not contain control characters (found U+${control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")})`;
	if (LONE_SURROGATE.test(s)) return "must be well-formed Unicode (no lone surrogates)";
	return null;
}

/** True when the string holds an invisible or layout-changing character. */
export function hasInvisible(s: string): boolean {
	return INVISIBLE.test(s);
}

/** One line of text (names, slugs, addresses): no control characters at all, not even tab or line breaks, no lone surrogates. */
export const SINGLE_LINE = /^[^\p{Cc}\p{Cs}]*$/u;

/** The first character a text must not hold, as "U+0000", or undefined when it is clean (`multiline` allows tab and line breaks). */
export function forbiddenCharacter(value: string, multiline = false): string | undefined {
	const bad = multiline ? /(?![\t\n\r])[\p{Cc}\p{Cs}]/u : /[\p{Cc}\p{Cs}]/u;
	const m = bad.exec(value);
	if (m) return `U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
	return LONE_SURROGATE.test(value) ? "a lone surrogate" : undefined;
}

/** A fastest-validator string rule for one line of text, with a message naming the problem. */
export function singleLine(min: number, max: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
	return { type: "string", trim: true, min, max, pattern: SINGLE_LINE, messages: { stringPattern: "The '{field}' field must not contain control characters." }, ...extra };
}
