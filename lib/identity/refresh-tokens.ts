/**
 * Refresh tokens are opaque random strings; only their SHA-256 is stored, so a database leak
 * does not hand out sessions.
 */
import { createHash, randomBytes } from "node:crypto";

export function newRefreshToken(): { token: string; hash: string } {
	const token = randomBytes(32).toString("base64url");
	return { token, hash: hashRefreshToken(token) };
}

export function hashRefreshToken(token: string): string {
	return createHash("sha256").update(token).digest("hex");
}
