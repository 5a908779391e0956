/**
 * Moleculer runs the `started` handlers of later mixins first, so an events mixin listed after
 * DbMixin would start before the database is open (and stop after it closed). From the merged
 * schema, this moves a mixin's handlers next to moleculer-db's: started just after the database
 * opened, stopped just before it closes — whatever the order of the mixins list.
 */
import DbService from "moleculer-db";

type Handler = (...args: unknown[]) => unknown;

function asList(value: Handler | Handler[] | undefined): Handler[] {
	if (!value) return [];
	return Array.isArray(value) ? [...value] : [value];
}

export function placeAfterDatabase(schema: Record<string, any>, mixin: string, own: { started: Handler; stopped: Handler }): void {
	const db = DbService as unknown as { started: Handler; stopped: Handler };
	for (const hook of ["started", "stopped"] as const) {
		const list = asList(schema[hook]).filter(fn => fn !== own[hook]);
		const at = list.indexOf(db[hook]);
		if (at < 0) throw new Error(`${mixin} needs DbMixin in the mixins of '${schema.name}'`);
		// Stopped handlers run in reverse order: right after the database's entry means just before it closes.
		list.splice(at + 1, 0, own[hook]);
		schema[hook] = list;
	}
}
