/**
 * What text the platform stores: no control characters where a person types one line (names,
 * slugs, addresses), and only tab and line breaks where they type several (descriptions). A NUL
 * or a lone surrogate is never stored: SQLite fails on some of them and PostgreSQL alters them.
 */

/** One line of text: no C0/C1 control characters, no DEL, no lone surrogates. */
export const SINGLE_LINE = /^[^\p{Cc}\p{Cs}]*$/u;

/** Several lines: tab, line feed and carriage return allowed; other control characters not. */
export const MULTI_LINE = /^(?:[\t\n\r]|[^\p{Cc}\p{Cs}])*$/u;

/** The first character a text of that kind must not hold, as "U+0000", or undefined when it is clean. */
export function forbiddenCharacter(value: string, multiline = false): string | undefined {
	const bad = multiline ? /(?![\t\n\r])[\p{Cc}\p{Cs}]/u : /[\p{Cc}\p{Cs}]/u;
	const m = bad.exec(value);
	return m ? `U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}` : undefined;
}

/** A fastest-validator string rule for one line of text, with a message naming the problem. */
export function singleLine(min: number, max: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
	return { type: "string", trim: true, min, max, pattern: SINGLE_LINE, messages: { stringPattern: "The '{field}' field must not contain control characters." }, ...extra };
}
