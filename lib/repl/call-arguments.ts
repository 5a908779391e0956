/**
 * `call catalog.list --sort -price` in the REPL: moleculer-repl hands `--sort -price` to
 * yargs-parser, which reads `-price` as five short flags (p, r, i, c, e) and `sort` as `true`.
 * Action params have no short flags, so a value that starts with one dash after a `--name` is the
 * name's value: we rewrite it to `--name=-price`, which yargs-parser keeps as the string.
 */

/** `["--sort", "-price"]` → `["--sort=-price"]`; everything else unchanged. */
export function joinDashValues(args: string[]): string[] {
	const out: string[] = [];
	for (let i = 0; i < args.length; i++) {
		const arg = args[i];
		const next = args[i + 1];
		if (/^--[^=\s]+$/.test(arg) && next !== undefined && /^-[^-]/.test(next)) {
			out.push(`${arg}=${next}`);
			i++;
		} else {
			out.push(arg);
		}
	}
	return out;
}

let patched = false;

/**
 * Makes moleculer-repl's argument parser (used by `call`, `dcall`, `emit` and custom commands)
 * apply `joinDashValues` first. Must run before moleculer-repl loads its commands, i.e. before
 * `broker.repl()`: they keep a reference to the parser from when they load. moleculer-repl is
 * pinned (package.json), and test/unit/ops/repl-commands.spec.ts checks this still works.
 */
export function patchReplArgumentParser(): void {
	if (patched) return;
	patched = true;
	const argsParser = require("moleculer-repl/src/args-parser") as { parser: (args: string[]) => Record<string, unknown> };
	const original = argsParser.parser;
	argsParser.parser = (args: string[]) => original(joinDashValues(args));
}
