import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadCustomCommands } from "../../../bin/repl";

function commandDir(files: Record<string, string>): string {
	const dir = mkdtempSync(join(tmpdir(), "mc-repl-"));
	for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body);
	return dir;
}

describe("REPL custom commands", () => {
	it("loads every command definition exported by the *-commands modules, skipping other files", () => {
		const dir = commandDir({
			"saga-commands.js": `module.exports.default = [{ command: "sagas", description: "list sagas", action() {} }, { command: "saga-retry <id>", action() {} }];`,
			"event-commands.js": `exports.commands = [{ command: "outbox", action() {} }];`,
			"helpers.js": `module.exports = [{ command: "not-loaded", action() {} }];`,
		});
		const { commands, problems } = loadCustomCommands(dir);
		expect(commands.map(c => c.command)).toEqual(["outbox", "sagas", "saga-retry <id>"]);
		expect(problems).toEqual([]);
	});

	it("reports a module that fails to load or exports no commands, and keeps the others", () => {
		const dir = commandDir({
			"broken-commands.js": `throw new Error("boom");`,
			"empty-commands.js": `module.exports = { notAnArray: 1 };`,
			"ok-commands.js": `module.exports = [{ command: "ok", action() {} }];`,
		});
		const { commands, problems } = loadCustomCommands(dir);
		expect(commands.map(c => c.command)).toEqual(["ok"]);
		expect(problems).toEqual(["broken-commands.js: boom", "empty-commands.js: exports no command definitions"]);
	});

	it("finds no commands and no problems when the directory does not exist", () => {
		expect(loadCustomCommands(join(tmpdir(), "no-such-dir-mc-repl"))).toEqual({ commands: [], problems: [] });
	});
});

describe("REPL call arguments", () => {
	it("reads `--sort -price` as the value -price, not as short flags", () => {
		const { joinDashValues, patchReplArgumentParser } = require("../../../lib/repl/call-arguments") as typeof import("../../../lib/repl/call-arguments");
		expect(joinDashValues(["--sort", "-price", "--page", "2"])).toEqual(["--sort=-price", "--page", "2"]);
		expect(joinDashValues(["--flag", "--other", "x"])).toEqual(["--flag", "--other", "x"]);
		patchReplArgumentParser();
		// The parser moleculer-repl's `call` command uses, after the patch.
		const { parser } = require("moleculer-repl/src/args-parser") as { parser: (a: string[]) => Record<string, unknown> };
		expect(parser(["--sort", "-price", "--pageSize", "5", "--n", "-3"])).toEqual({ sort: "-price", pageSize: 5, n: -3 });
	});
});
