/**
 * The broker's parameter validator: fastest-validator with strict objects by default, behind a
 * scan of everything a caller sends that no schema can forget.
 *
 * - Strict objects: parameters an action does not declare are refused (422), so no caller can
 *   assign fields it was not meant to (no mass assignment). A public action (one that declares
 *   `auth`) without a `params` schema takes no parameters at all.
 * - Before the schema runs, every string anywhere in the params (path, query and body all arrive
 *   here through the gateway) is checked for control characters and lone surrogates
 *   (lib/text.ts), every key for `__proto__`/`constructor`, the objects for plain prototypes and
 *   the nesting for depth. A refusal is the validator's own 422 (`ValidationError`, type
 *   VALIDATION_ERROR, `data: [{ field, message }]`), raised before the handler and so before any
 *   database sees the value.
 * - `null` is a value, not an absence (fastest-validator's `considerNullAsAValue`): a rule accepts
 *   it only when it declares `nullable: true` (types `any` and `forbidden` excepted). Without this
 *   fastest-validator lets null through every optional field, and a handler reads it as "not
 *   sent" or stores it (API.md: `{"amount": null}` on a refund is 422, not "refund the rest"). A
 *   PATCH field where null clears the value declares `nullable: true`. A rule with a `default`
 *   refuses null too instead of silently replacing it. The error is the validator's `required`
 *   with the message NULL_MESSAGE.
 */
import { Validators } from "moleculer";
import { FORBIDDEN_KEYS, textProblem } from "./text";

const Fastest = Validators.Fastest as any;

/** Deeper than this is refused; the gateway's body parser allows less (lib/http-body.ts). */
export const MAX_PARAM_DEPTH = 32;

export interface ParamProblem {
	type: string;
	field: string;
	message: string;
}

const join = (path: string, key: string | number) => (typeof key === "number" ? `${path}[${key}]` : path ? `${path}.${key}` : key);

/**
 * Problems of a params object that hold whatever the schema says: forbidden keys, unreadable
 * text, foreign prototypes, excessive depth. Empty when there are none. Iterative, so a hostile
 * depth cannot exhaust the stack.
 */
export function inspectParams(params: unknown): ParamProblem[] {
	const problems: ParamProblem[] = [];
	const stack: { value: unknown; path: string; depth: number }[] = [{ value: params, path: "", depth: 0 }];
	while (stack.length && problems.length < 20) {
		const { value, path, depth } = stack.pop()!;
		if (typeof value === "string") {
			const problem = textProblem(value);
			if (problem) problems.push({ type: "stringText", field: path || "params", message: `${path || "params"} ${problem}` });
			continue;
		}
		if (value === null || typeof value !== "object") continue;
		if (depth >= MAX_PARAM_DEPTH) {
			problems.push({ type: "objectDepth", field: path, message: `${path || "params"} is nested more than ${MAX_PARAM_DEPTH} levels deep` });
			continue;
		}
		if (Array.isArray(value)) {
			value.forEach((v, i) => stack.push({ value: v, path: join(path, i), depth: depth + 1 }));
			continue;
		}
		const proto = Object.getPrototypeOf(value);
		// Dates and buffers travel in internal calls; anything else with its own prototype was merged from somewhere it should not have been.
		// A plain object's prototype is an Object.prototype (of any realm: structuredClone and vm contexts make others) or null.
		const plain = proto === null || Object.getPrototypeOf(proto) === null;
		if (!plain && !(value instanceof Date) && !Buffer.isBuffer(value)) {
			problems.push({ type: "objectPrototype", field: path || "params", message: `${path || "params"} is not a plain object` });
			continue;
		}
		for (const key of Object.keys(value)) {
			const field = join(path, key);
			if (FORBIDDEN_KEYS.has(key)) {
				problems.push({ type: "objectStrict", field, message: `Unknown field(s): ${field}` });
				continue;
			}
			const keyProblem = textProblem(key);
			if (keyProblem) {
				problems.push({ type: "stringText", field: path || "params", message: `a field name ${keyProblem}` });
				continue;
			}
			stack.push({ value: (value as Record<string, unknown>)[key], path: field, depth: depth + 1 });
		}
	}
	return problems;
}

/**
 * A number sent as text (query strings): decimal digits with an optional sign, fraction and
 * exponent, as JSON writes numbers. fastest-validator's `convert` takes whatever `Number()` takes,
 * so `0x10` became 16, `" 1"` 1 and an empty value 0 (`?maxPrice=` listed only free products).
 */
export const DECIMAL_TEXT = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;

/** Top-level fields of a schema whose rule is a number with `convert: true` (shorthand or object), and whether each is optional. */
function convertedNumbers(schema: Record<string, unknown>, inner: { parseShortHand(s: string): Record<string, unknown> }): { field: string; optional: boolean }[] {
	const out: { field: string; optional: boolean }[] = [];
	for (const [field, rule] of Object.entries(schema)) {
		if (field.startsWith("$$")) continue;
		const r = typeof rule === "string" ? inner.parseShortHand(rule) : (rule as Record<string, unknown> | null);
		if (r && !Array.isArray(r) && r.type === "number" && r.convert === true) out.push({ field, optional: r.optional === true });
	}
	return out;
}

/**
 * Numbers sent as text that are not decimal numbers → the validator's `number` problem. An empty
 * text in an optional one (`?minPrice=`, as API.md's own query templates show) means "not given"
 * and is removed; in a required one it is left for the schema to refuse.
 */
function numberTexts(params: Record<string, unknown>, fields: { field: string; optional: boolean }[]): ParamProblem[] {
	const problems: ParamProblem[] = [];
	for (const { field, optional } of fields) {
		const value = params[field];
		if (typeof value !== "string") continue;
		if (value === "" && optional) delete params[field];
		else if (!DECIMAL_TEXT.test(value)) problems.push({ type: "number", field, message: `The '${field}' field must be a decimal number.` });
	}
	return problems;
}

/** The message of a null sent where the rule does not declare `nullable: true`. */
export const NULL_MESSAGE = "The '{field}' field is required and cannot be null.";

/** Types that take null as any other value. */
const NULL_TAKING_TYPES = new Set(["any", "forbidden"]);

export class StrictValidator extends Fastest {
	constructor(opts: Record<string, unknown> = {}) {
		super({ considerNullAsAValue: true, ...opts });
		// fastest-validator wraps every rule's check (nested props, array items, multi alternatives)
		// in the source this method returns, with the rule's schema already resolved from its
		// shorthand: the one place where every rule's null handling can be set.
		const inner = (this as any).validator;
		const wrap = inner.wrapRequiredCheckSourceCode.bind(inner);
		inner.wrapRequiredCheckSourceCode = (rule: { schema: Record<string, unknown>; messages: Record<string, string> }, ...rest: unknown[]) => {
			const schema = rule.schema;
			if (schema.nullable === true || NULL_TAKING_TYPES.has(schema.type as string)) return wrap(rule, ...rest);
			schema.nullable = false;
			const refuse = inner.makeError({ type: "required", actual: "value", messages: { ...rule.messages, required: NULL_MESSAGE } });
			return `if (value === null) { ${refuse} } else ${wrap(rule, ...rest).trimStart()}`;
		};
	}

	compile(schema: Record<string, unknown>) {
		const strict = schema.$$root || "$$strict" in schema ? schema : { $$strict: true, ...schema };
		const check = super.compile(strict);
		const converted = schema.$$root ? [] : convertedNumbers(schema, (this as any).validator);
		const guarded = (params: unknown, opts?: unknown) => {
			const problems = inspectParams(params);
			if (!problems.length && converted.length) problems.push(...numberTexts(params as Record<string, unknown>, converted));
			if (problems.length) return check.async ? Promise.resolve(problems) : problems;
			return check(params, opts);
		};
		guarded.async = check.async;
		return guarded;
	}

	/** Public actions without a schema take no parameters (strict `{}`); the rest as Moleculer does. */
	middleware(broker: unknown) {
		const base = super.middleware(broker);
		const localAction = base.localAction;
		return {
			...base,
			localAction(this: unknown, handler: unknown, action: Record<string, any>) {
				const params = action.params ?? (action.auth !== undefined ? {} : undefined);
				return localAction.call(this, handler, params === action.params ? action : { ...action, params });
			},
		};
	}
}
