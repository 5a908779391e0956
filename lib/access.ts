/**
 * Who may call what. An action declares `auth` ("public", "any", "customer", "admin") and, for
 * admins, the `roles` it needs; the gateway and the owning service both check with this.
 */
import { ForbiddenError, UnauthorizedError } from "./errors";

export type AuthRule = "public" | "any" | "customer" | "admin";
export const ADMIN_ROLES = ["superadmin", "catalog", "ops", "support"] as const;
export type AdminRole = (typeof ADMIN_ROLES)[number];

/** What crosses service boundaries as `ctx.meta.user`: nothing more. */
export interface CallerUser {
	id: string;
	typ: "customer" | "admin" | "system";
	roles: string[];
	sid?: string;
}

/** Internal jobs (sweepers, saga recovery) act as this user. */
export const SYSTEM_USER: CallerUser = Object.freeze({ id: "system", typ: "system", roles: [] }) as CallerUser;

export function checkAccess(user: CallerUser | undefined, auth: AuthRule = "any", roles: readonly string[] = []): void {
	if (auth === "public") return;
	if (!user) throw new UnauthorizedError();
	if (user.typ === "system") return;
	if (auth === "customer" && user.typ !== "customer") throw new ForbiddenError("Customers only");
	if (auth === "admin") {
		if (user.typ !== "admin") throw new ForbiddenError("Admins only");
		if (roles.length && !user.roles.includes("superadmin") && !roles.some(r => user.roles.includes(r))) {
			throw new ForbiddenError(`Needs role ${roles.join(" or ")}`, "MISSING_ROLE");
		}
	}
}

export function isAdmin(user: CallerUser | undefined, ...roles: string[]): boolean {
	if (!user) return false;
	if (user.typ === "system") return true;
	if (user.typ !== "admin") return false;
	return !roles.length || user.roles.includes("superadmin") || roles.some(r => user.roles.includes(r));
}
