/**
 * fastest-validator with strict objects by default: parameters an action does not declare are
 * refused (422), so no caller can assign fields it was not meant to (no mass assignment).
 */
import { Validators } from "moleculer";

const Fastest = Validators.Fastest as any;

export class StrictValidator extends Fastest {
	compile(schema: Record<string, unknown>) {
		const strict = schema.$$root || "$$strict" in schema ? schema : { $$strict: true, ...schema };
		return super.compile(strict);
	}
}
