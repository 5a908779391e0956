/**
 * Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane). Unknown users are
 * checked against a dummy hash so that response time does not tell which emails exist.
 *
 * A password is hashed and compared in Unicode NFC (RFC 8265 §4.2, the OpaqueString profile): `é`
 * typed as one code point on one keyboard and as `e` + U+0301 on another is the same password.
 * Hashes made before this rule (of the text as sent) still verify: when the NFC form fails and
 * differs from what was sent, the text as sent is tried too.
 */
import argon2 from "argon2";

const OPTIONS = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export const PASSWORD_RULE = "string|min:10|max:128";

export function hashPassword(password: string): Promise<string> {
	return argon2.hash(password.normalize("NFC"), OPTIONS);
}

let dummyHash: Promise<string> | undefined;

/** Verifies a password against a stored hash, or against a dummy hash when there is none. */
export async function verifyPassword(hash: string | null | undefined, password: string): Promise<boolean> {
	if (!hash) {
		dummyHash ??= argon2.hash("dummy-password-for-timing", OPTIONS);
		await argon2.verify(await dummyHash, password);
		return false;
	}
	try {
		const nfc = password.normalize("NFC");
		if (await argon2.verify(hash, nfc)) return true;
		return nfc !== password && (await argon2.verify(hash, password));
	} catch {
		// A malformed stored hash is a failed login, not a server error.
		return false;
	}
}
