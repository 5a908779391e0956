/**
 * `npm run import -- <file.csv> [--dry-run] [--batch-size N] [--json]`: loads a catalogue file
 * (format: docs/FIRST-RUN.md) into the shop. With TRANSPORTER set it joins the running cluster,
 * as `npm run seed` does; without it, it works embedded on the SQLite files of DATA_DIR.
 *
 * Prints progress on stderr, then a summary and every refused row with its line number on
 * stdout (`--json`: the report as JSON). Exit status: 0 every row imported, 2 some rows refused
 * (the others imported), 65 the file cannot be imported (nothing written), 64 usage, 1 failure.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ImportAborted, importCatalogue } from "../lib/catalog-io/importer";
import { importProgress, importSummary } from "../lib/catalog-io/report";
import { openSession, runCommand } from "../lib/catalog-io/session";

const USAGE = "usage: npm run import -- <file.csv> [--dry-run] [--batch-size N] [--json]";

async function main(): Promise<number> {
	let args;
	try {
		args = parseArgs({ allowPositionals: true, options: { "dry-run": { type: "boolean" }, "batch-size": { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } });
	} catch (err) {
		console.error(`${(err as Error).message}\n${USAGE}`);
		return 64;
	}
	if (args.values.help || args.positionals.length !== 1) {
		console.error(USAGE);
		return args.values.help ? 0 : 64;
	}
	const batchSize = args.values["batch-size"] === undefined ? undefined : Number(args.values["batch-size"]);
	if (batchSize !== undefined && !(Number.isInteger(batchSize) && batchSize >= 1 && batchSize <= 1000)) {
		console.error(`--batch-size must be a whole number from 1 to 1000\n${USAGE}`);
		return 64;
	}
	// npm runs scripts in the package's folder; a relative path means the caller's folder.
	const file = resolve(process.env.INIT_CWD ?? process.cwd(), args.positionals[0]);
	const session = await openSession("import", line => console.error(line));
	try {
		const report = await importCatalogue(session.client, file, { dryRun: args.values["dry-run"], batchSize, onProgress: p => console.error(importProgress(p)) });
		console.log(args.values.json ? JSON.stringify(report) : importSummary(report));
		return report.refused.length ? 2 : 0;
	} catch (err) {
		if (err instanceof ImportAborted) {
			console.error(err.message);
			return 65;
		}
		throw err;
	} finally {
		await session.close();
	}
}

runCommand(main, "Import", err => (err?.code === "ENOENT" ? 66 : 1));
