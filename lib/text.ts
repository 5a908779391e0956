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
 * - Invisible formatting characters (FORMATTING): the bidirectional embeddings, overrides and
 *   isolates U+202A–U+202E and U+2066–U+2069 (they reorder how the text around them is shown:
 *   "Trojan Source", CVE-2021-42574, Unicode TR #36 §2.4), zero-width space U+200B, word joiner
 *   and invisible operators U+2060–U+2064, the deprecated format controls U+206A–U+206F, the BOM
 *   U+FEFF, soft hyphen U+00AD, Mongolian vowel separator U+180E and the interlinear annotation
 *   controls U+FFF9–U+FFFB, and the Hangul fillers U+115F, U+1160, U+3164, U+FFA0 (letters that
 *   show as nothing: a "blank" name): a name holding one is not what it looks like. Kept, because real text
 *   needs them: ZWNJ/ZWJ (U+200C/U+200D: Persian and Indic scripts, emoji sequences), the marks
 *   LRM/RLM/ALM (U+200E, U+200F, U+061C: right-to-left text) and tag characters (flag emoji).
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

/** Invisible formatting characters refused in any text (see above). */
const FORMATTING = /[\u00AD\u180E\u200B\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\u115F\u1160\u3164\uFFA0]/;

const codePoint = (c: string) => `U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`;

export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(["__proto__", "constructor"]);

/** Why a string cannot be accepted as sent, or null when it can. */
export function textProblem(s: string): string | null {
	const control = CONTROL.exec(s);
	if (control) return `must not contain control characters (found ${codePoint(control[0])})`;
	if (LONE_SURROGATE.test(s)) return "must be well-formed Unicode (no lone surrogates)";
	const formatting = FORMATTING.exec(s);
	if (formatting) return `must not contain invisible formatting characters (found ${codePoint(formatting[0])})`;
	return null;
}

/** True when the string holds an invisible or layout-changing character. */
export function hasInvisible(s: string): boolean {
	return INVISIBLE.test(s);
}

/**
 * One line of text (names, slugs, addresses): no control characters at all, not even tab or line
 * breaks (U+2028/U+2029 included), no lone surrogates, no invisible formatting characters.
 */
export const SINGLE_LINE = /^(?![\s\S]*[\u00AD\u180E\u200B\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB\u115F\u1160\u3164\uFFA0])[^\p{Cc}\p{Cs}\u2028\u2029]*$/u;

/** The first character a text must not hold, as "U+0000", or undefined when it is clean (`multiline` allows tab and line breaks). */
export function forbiddenCharacter(value: string, multiline = false): string | undefined {
	const bad = multiline ? /(?![\t\n\r])[\p{Cc}\p{Cs}]/u : /[\p{Cc}\p{Cs}\u2028\u2029]/u;
	const m = bad.exec(value) ?? FORMATTING.exec(value);
	if (m) return codePoint(m[0]);
	return LONE_SURROGATE.test(value) ? "a lone surrogate" : undefined;
}

/** Why a text cannot be stored as sent ("must not contain … (found U+202E)"), or undefined (`multiline` allows tab and line breaks). */
export function characterProblem(value: string, multiline = false): string | undefined {
	const bad = forbiddenCharacter(value, multiline);
	if (!bad) return undefined;
	if (bad === "a lone surrogate") return "must be well-formed Unicode (no lone surrogates)";
	return FORMATTING.test(String.fromCharCode(parseInt(bad.slice(2), 16))) ? `must not contain invisible formatting characters (found ${bad})` : `must not contain control characters (found ${bad})`;
}

/** A fastest-validator string rule for one line of text, with a message naming the problem. */
export function singleLine(min: number, max: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
	return { type: "string", trim: true, min, max, pattern: SINGLE_LINE, messages: { stringPattern: "The '{field}' field must not contain control characters, line breaks or invisible formatting characters." }, ...extra };
}
