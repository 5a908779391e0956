// The platform's own action properties, read by the gateway and the access mixin.
import type { AuthRule } from "../lib/access";

declare module "../node_modules/moleculer/src/service" {
	interface ActionSchema<TThis> {
		/** Who may call it: "public", "any" signed-in user, "customer" or "admin". */
		auth?: AuthRule;
		/** Admin roles, any one of which is enough (superadmin has them all). */
		roles?: string[];
		/**
		 * The action's own timeout (ms), the default of every call that gives none. Moleculer 0.15
		 * honours it (its Timeout middleware reads `action.timeout`; the registry sends it to remote
		 * callers) but its typings leave it out. lib/command-timeouts.ts.
		 */
		timeout?: number;
		/** Augmentation must repeat the type parameter; this marks it used. */
		readonly __thisType?: TThis;
	}
	interface ServiceSettingSchema {
		[key: string]: any;
	}
}
