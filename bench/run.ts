/**
 * `npm run bench`: every benchmark in bench/ (each writes its figures to bench/results/), one
 * after the other so they do not compete for the machine's cores.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const benches = readdirSync(__dirname).filter(f => f.endsWith(".js") && f !== "run.js").sort();
let failed = 0;
for (const b of benches) {
	console.log(`\n=== bench/${b}`);
	const r = spawnSync(process.execPath, [join(__dirname, b)], { stdio: "inherit" });
	if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
