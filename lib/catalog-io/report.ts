/**
 * How an import or export tells a person what happened: one summary line, then every refused
 * row with its line number and reason. Shared by the command line and the REPL.
 */
import type { ImportProgress, ImportReport } from "./importer";

const n = (x: number) => x.toLocaleString("en-US");

export function importSummary(r: ImportReport): string {
	const would = r.dryRun ? "would be " : "";
	const lines = [
		`${r.file}: ${n(r.rows)} rows in ${(r.ms / 1000).toFixed(1)} s (${n(r.rowsPerSecond)} rows/s)${r.dryRun ? " [dry run: nothing written]" : ""}`,
		`  products: ${would}${n(r.created)} created, ${n(r.updated)} updated, ${n(r.unchanged)} unchanged; ${n(r.refused.length)} rows refused`,
		`  stock: ${would}${n(r.stock.set)} set, ${n(r.stock.unchanged)} unchanged`,
	];
	if (r.refused.length) {
		lines.push("refused rows:");
		for (const x of r.refused) lines.push(`  line ${x.line}${x.sku ? ` (SKU ${x.sku})` : ""}: ${x.reason}`);
	}
	return lines.join("\n");
}

export function importProgress(p: ImportProgress): string {
	const pct = p.totalBytes ? Math.round((100 * p.bytes) / p.totalBytes) : 100;
	const rate = p.elapsedMs ? Math.round((p.rows * 1000) / p.elapsedMs) : 0;
	return `… ${n(p.rows)} rows (${pct} % of the file), ${n(rate)} rows/s`;
}
