/**
 * One email namespace for customers and admin users (shared/API.md): an address is compared and
 * stored after Unicode NFC normalisation, trimming and lower-casing, and refused (422) when it is
 * not a valid address or holds control or invisible characters. So `Zoë@Example.com`, its NFD
 * spelling, one with a zero-width space or with a trailing dot in the domain are never a second
 * account that looks like the first.
 *
 * Validity is validator.js's `isEmail` (RFC 5321/5322 syntax, a domain with a TLD, no trailing
 * dot, local part ≤ 64 and address ≤ 254 octets), with quoted local parts refused (`"a"@x` and
 * `a@x` are the same mailbox) and no display names, IP-address domains or UTF-8 beyond NFC.
 *
 * Look-alikes are refused too (422), as "not a valid address": compatibility characters (those
 * NFKC would change: fullwidth `ｈ`, the ligature `ﬁ`, mathematical letters; the PRECIS
 * IdentifierClass of RFC 8264 §9.17 disallows them), and a local part or domain label that mixes
 * scripts (Latin with a Cyrillic `о`: UTS #39 §5.2 "highly restrictive", with Han + Hiragana +
 * Katakana, Han + Hangul and Han + Bopomofo allowed). Whole-script look-alikes (an all-Cyrillic
 * `аое`) would need the confusables table and are not caught.
 */
import { domainToASCII, domainToUnicode } from "node:url";
import isEmail from "validator/lib/isEmail";
import { UnprocessableError } from "../errors";
import { hasInvisible, textProblem } from "../text";

/** Params rule for an email field; the handler then calls `parseEmail` (or `normaliseEmail` for look-ups). */
export const EMAIL_PARAM = "string|min:1|max:320";

/**
 * The comparison form of an address, whether or not it is valid: NFC, trimmed, lower-cased, and
 * an internationalised domain in one spelling (UTS #46 through `node:url`, so `münchen.de` and
 * `xn--mnchen-3ya.de` are one domain, kept in its Unicode form).
 */
export function normaliseEmail(email: string): string {
	const lowered = email.normalize("NFC").trim().toLowerCase().normalize("NFC");
	const at = lowered.lastIndexOf("@");
	if (at < 0) return lowered;
	const ascii = domainToASCII(lowered.slice(at + 1));
	return ascii ? `${lowered.slice(0, at)}@${domainToUnicode(ascii)}` : lowered;
}

/** Scripts told apart for the mixed-script rule; characters of none (digits, punctuation, marks) go with any. */
const SCRIPTS = ["Latin", "Cyrillic", "Greek", "Armenian", "Georgian", "Hebrew", "Arabic", "Syriac", "Thaana", "Devanagari", "Bengali", "Gurmukhi", "Gujarati", "Tamil", "Telugu", "Kannada", "Malayalam", "Sinhala", "Thai", "Lao", "Tibetan", "Myanmar", "Khmer", "Ethiopic", "Cherokee", "Mongolian", "Han", "Hiragana", "Katakana", "Hangul", "Bopomofo"].map(name => ({ name, re: new RegExp(`^\\p{Script=${name}}$`, "u") }));
/** Han with the scripts written together with it (UTS #39 §5.2). */
const CJK = [new Set(["Han", "Hiragana", "Katakana"]), new Set(["Han", "Hangul"]), new Set(["Han", "Bopomofo"])];

/** The scripts of a text's letters. */
function scriptsOf(text: string): Set<string> {
	const found = new Set<string>();
	for (const ch of text) {
		const script = SCRIPTS.find(s => s.re.test(ch));
		if (script) found.add(script.name);
	}
	return found;
}

/** True when a local part or domain label writes in more than one script (CJK combinations excepted). */
export function mixesScripts(part: string): boolean {
	const scripts = scriptsOf(part);
	return scripts.size > 1 && !CJK.some(allowed => [...scripts].every(s => allowed.has(s)));
}

/** Why an address cannot be an account's email, or null when it can (after normalisation). */
export function emailProblem(raw: string): string | null {
	const text = textProblem(raw);
	if (text) return `email ${text}`;
	const email = normaliseEmail(raw);
	if (hasInvisible(email)) return "email must not contain invisible characters";
	if (email.normalize("NFKC") !== email) return "email must not contain compatibility characters (fullwidth letters, ligatures, mathematical letters)";
	const at = email.lastIndexOf("@");
	if (at > 0 && [email.slice(0, at), ...email.slice(at + 1).split(".")].some(mixesScripts)) return "email must not mix scripts in one part (e.g. Latin with Cyrillic)";
	const ok = isEmail(email, { allow_display_name: false, require_tld: true, allow_ip_domain: false, allow_utf8_local_part: true, blacklisted_chars: '"' });
	return ok ? null : "email must be a valid address, e.g. name@example.com";
}

/** The normalised address, or 422 VALIDATION_ERROR on `field` saying what is wrong. */
export function parseEmail(raw: string, field = "email"): string {
	const problem = emailProblem(raw);
	if (problem) throw new UnprocessableError(`Invalid ${field}: ${problem}`, "VALIDATION_ERROR", [{ field, message: problem }]);
	return normaliseEmail(raw);
}
