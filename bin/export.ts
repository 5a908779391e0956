/**
 * `npm run export -- <file.csv | ->`: writes the catalogue (every product that is not archived,
 * with its stock per warehouse) in the format `npm run import` reads. Joins the cluster with
 * TRANSPORTER set, else works embedded on DATA_DIR. `-` writes to stdout.
 */
import { createWriteStream } from "node:fs";
import { resolve } from "node:path";
import { exportCatalogue } from "../lib/catalog-io/exporter";
import { openSession, runCommand } from "../lib/catalog-io/session";

const USAGE = "usage: npm run export -- <file.csv | ->";

async function main(): Promise<number> {
	const args = process.argv.slice(2);
	if (args.length !== 1 || args[0] === "--help" || args[0] === "-h") {
		console.error(USAGE);
		return args.length === 1 ? 0 : 64;
	}
	const toStdout = args[0] === "-";
	const file = toStdout ? "stdout" : resolve(process.env.INIT_CWD ?? process.cwd(), args[0]);
	const session = await openSession("export", line => console.error(line));
	try {
		const out = toStdout ? process.stdout : createWriteStream(file);
		const r = await exportCatalogue(session.client, out, n => console.error(`… ${n.toLocaleString("en-US")} products`));
		console.error(`${file}: ${r.products} products${r.warehouses.length ? `, stock in ${r.warehouses.join(", ")}` : ""} in ${(r.ms / 1000).toFixed(1)} s`);
		return 0;
	} finally {
		await session.close();
	}
}

runCommand(main, "Export");
