import { readFileSync } from "node:fs";
import { join } from "node:path";

const root = join(__dirname, "../../..");
const readme = readFileSync(join(root, "README.md"), "utf8");

/** The variable names of the configuration schema, read from its source. */
function configVariables(): string[] {
	const source = readFileSync(join(root, "config/index.ts"), "utf8");
	const body = /const schema = z\.object\(\{([\s\S]*?)\n\}\);/.exec(source)?.[1] ?? "";
	return [...body.matchAll(/^\t([A-Z][A-Z0-9_]*):/gm)].map(m => m[1]);
}

describe("README", () => {
	it("documents every configuration variable in its configuration table", () => {
		const variables = configVariables();
		expect(variables.length).toBeGreaterThan(30);
		const table = readme.slice(readme.indexOf("## Configuration"), readme.indexOf("## Observability"));
		expect(variables.filter(v => !table.includes(`\`${v}\``))).toEqual([]);
	});

	it("starts with the two set-up commands, run and test", () => {
		const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1].trim().split("\n").map(l => l.split("#")[0].trim());
		expect(firstBlock).toEqual(["npm ci && npm start", "bash .ci/run"]);
	});
});
