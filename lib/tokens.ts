/**
 * Access tokens: HS256 JWTs with the claims of shared/API.md. The algorithm is pinned on
 * verification, so `alg: none` or an RS/HS confusion is refused.
 */
import { type KeyObject, createSecretKey } from "node:crypto";
import jwt from "jsonwebtoken";
import { config } from "../config";
import { UnauthorizedError } from "./errors";

export interface AccessClaims {
	sub: string;
	typ: "customer" | "admin";
	roles: string[];
	sid: string;
	iat: number;
	exp: number;
	iss: string;
	aud: string;
}

const ALGORITHM = "HS256" as const;

/**
 * The HMAC key object, built once per secret: jsonwebtoken builds one from a string secret on every
 * sign and verify (`createSecretKey`), which was a sixth of the gateway's CPU (issue 10).
 */
let keyCache: { secret: string; key: KeyObject } | undefined;
function hmacKey(secret: string): KeyObject {
	if (keyCache?.secret !== secret) keyCache = { secret, key: createSecretKey(Buffer.from(secret, "utf8")) };
	return keyCache.key;
}

export function signAccessToken(claims: { sub: string; typ: "customer" | "admin"; roles: string[]; sid: string }): { token: string; expiresIn: number } {
	const c = config();
	const token = jwt.sign({ typ: claims.typ, roles: claims.roles, sid: claims.sid }, hmacKey(c.JWT_SECRET), {
		algorithm: ALGORITHM,
		subject: claims.sub,
		expiresIn: c.ACCESS_TOKEN_TTL_S,
		issuer: c.JWT_ISSUER,
		audience: c.JWT_AUDIENCE,
	});
	return { token, expiresIn: c.ACCESS_TOKEN_TTL_S };
}

export function verifyAccessToken(token: string): AccessClaims {
	const c = config();
	let claims: any;
	try {
		claims = jwt.verify(token, hmacKey(c.JWT_SECRET), {
			algorithms: [ALGORITHM],
			issuer: c.JWT_ISSUER,
			audience: c.JWT_AUDIENCE,
			clockTolerance: 5,
		});
	} catch (err) {
		if ((err as Error).name === "TokenExpiredError") throw new UnauthorizedError("Token expired", "TOKEN_EXPIRED");
		throw new UnauthorizedError("Invalid token", "INVALID_TOKEN");
	}
	const ok =
		typeof claims?.sub === "string" &&
		(claims.typ === "customer" || claims.typ === "admin") &&
		Array.isArray(claims.roles) &&
		typeof claims.sid === "string";
	if (!ok) throw new UnauthorizedError("Invalid token", "INVALID_TOKEN");
	return claims as AccessClaims;
}
