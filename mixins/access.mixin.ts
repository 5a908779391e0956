/**
 * Authorisation inside the owning service: every action that declares `auth`/`roles` is checked
 * against `ctx.meta.user` on every call, whether it came through the gateway or from another
 * service (internal calls skip the gateway).
 */
import type { Context, ServiceSchema } from "moleculer";
import { type AuthRule, type CallerUser, checkAccess } from "../lib/access";
import { UnauthorizedError } from "../lib/errors";

export interface Meta {
	user?: CallerUser;
}

export function callerOf(ctx: Context<unknown, Meta>): CallerUser {
	const user = ctx.meta.user;
	if (!user) throw new UnauthorizedError();
	return user;
}

export const AccessMixin: Partial<ServiceSchema> = {
	hooks: {
		before: {
			"*"(ctx: Context<unknown, Meta>) {
				const action = ctx.action as unknown as { auth?: AuthRule; roles?: string[] } | undefined;
				if (action?.auth) checkAccess(ctx.meta.user, action.auth, action.roles);
			},
		},
	},
};
