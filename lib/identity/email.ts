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

/** Why an address cannot be an account's email, or null when it can (after normalisation). */
export function emailProblem(raw: string): string | null {
	const text = textProblem(raw);
	if (text) return `email ${text}`;
	const email = normaliseEmail(raw);
	if (hasInvisible(email)) return "email must not contain invisible characters";
	const ok = isEmail(email, { allow_display_name: false, require_tld: true, allow_ip_domain: false, allow_utf8_local_part: true, blacklisted_chars: '"' });
	return ok ? null : "email must be a valid address, e.g. name@example.com";
}

/** The normalised address, or 422 VALIDATION_ERROR on `field` saying what is wrong. */
export function parseEmail(raw: string, field = "email"): string {
	const problem = emailProblem(raw);
	if (problem) throw new UnprocessableError(`Invalid ${field}: ${problem}`, "VALIDATION_ERROR", [{ field, message: problem }]);
	return normaliseEmail(raw);
}
