/**
 * REPL commands for the catalogue file (the same import and export as `npm run import` /
 * `npm run export`, through the REPL's own connection to the cluster):
 *
 *   catalog-import <file> [--dry-run] [--batch-size n]   load a catalogue CSV, report refused rows
 *   catalog-export <file>                                write the catalogue as CSV
 *
 * Paths are on the machine the REPL runs on.
 */
import { createWriteStream } from "node:fs";
import { resolve } from "node:path";
import type { ServiceBroker } from "moleculer";
import { brokerClient } from "../catalog-io/client";
import { exportCatalogue } from "../catalog-io/exporter";
import { ImportAborted, importCatalogue } from "../catalog-io/importer";
import { importProgress, importSummary } from "../catalog-io/report";
import type { EventCommand } from "./event-commands";

export const catalogCommands: EventCommand[] = [
	{
		command: "catalog-import <file>",
		description: "Import a catalogue CSV (idempotent by SKU; refused rows are listed with their line)",
		options: [
			{ option: "--dry-run", description: "check every row, write nothing" },
			{ option: "--batch-size <n>", description: "rows per catalog call (1-1000, default 500)" },
		],
		async action(broker: ServiceBroker, args: any) {
			const o = args.options ?? {};
			try {
				const report = await importCatalogue(brokerClient(broker), resolve(String(args.file)), {
					dryRun: Boolean(o.dryRun),
					batchSize: o.batchSize === undefined ? undefined : Number(o.batchSize),
					onProgress: p => console.log(importProgress(p)),
				});
				console.log(importSummary(report));
			} catch (err) {
				console.log(err instanceof ImportAborted ? err.message : `catalog-import failed: ${(err as Error)?.message ?? err}`);
			}
		},
	},
	{
		command: "catalog-export <file>",
		description: "Write the catalogue (not archived products, stock per warehouse) as CSV",
		async action(broker: ServiceBroker, args: any) {
			try {
				const file = resolve(String(args.file));
				const r = await exportCatalogue(brokerClient(broker), createWriteStream(file));
				console.log(`${file}: ${r.products} products${r.warehouses.length ? `, stock in ${r.warehouses.join(", ")}` : ""}`);
			} catch (err) {
				console.log(`catalog-export failed: ${(err as Error)?.message ?? err}`);
			}
		},
	},
];
