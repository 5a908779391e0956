/**
 * Catalogue import (docs/FIRST-RUN.md): reads a CSV file (lib/catalog-io/format.ts) as a
 * stream with csv-parse, checks each row, and sends the good ones in batches — a few hundred
 * rows per `catalog.importProducts` call and their stock per `warehouse.setStockMany` call,
 * each one transaction — so 10,000 rows take a few dozen round trips, not 20,000.
 *
 * Every refused row is reported with its line number and reason (bad cells, a duplicate SKU in
 * the file, an unknown category, the product rules, stock below what is reserved), and the good
 * rows still go in. Import is idempotent by SKU: a second run reports every row unchanged. A dry
 * run checks everything the same way and writes nothing. A header that cannot be read (unknown
 * or missing columns, a stock column for a warehouse that does not exist) stops the import
 * before any row is sent.
 */
import { createReadStream, statSync } from "node:fs";
import { basename } from "node:path";
import { parse } from "csv-parse";
import type { CatalogueClient } from "./client";
import { type Header, type ProductFields, STOCK_PREFIX, type StockCell, parseHeader, parseRow } from "./format";

export interface ImportOptions {
	dryRun?: boolean;
	/** Rows per catalog call (default 500); a batch also closes at about 400 kB of JSON. */
	batchSize?: number;
	/** Called after each batch. */
	onProgress?: (p: ImportProgress) => void;
}

export interface ImportProgress {
	rows: number;
	bytes: number;
	totalBytes: number;
	elapsedMs: number;
}

export interface RefusedRow {
	line: number;
	sku?: string;
	reason: string;
}

export interface ImportReport {
	file: string;
	dryRun: boolean;
	/** Data rows read (the header not counted). */
	rows: number;
	created: number;
	updated: number;
	unchanged: number;
	/** Refused rows, by line; a row whose product went in but whose stock was refused is here too. */
	refused: RefusedRow[];
	stock: { set: number; unchanged: number };
	ms: number;
	rowsPerSecond: number;
}

/** The file cannot be imported as it is; nothing was sent. */
export class ImportAborted extends Error {
	constructor(readonly problems: string[]) {
		super(`The file cannot be imported:\n  ${problems.join("\n  ")}`);
		this.name = "ImportAborted";
	}
}

interface PendingRow {
	line: number;
	product: ProductFields;
	stock: StockCell[];
}

/** A batch stays well below NATS's 1 MB message limit even with 5,000-character descriptions. */
const MAX_BATCH_BYTES = 400_000;

/** Where a record starts: csv-parse counts lines to its end; a quoted field may span several. */
function startLine(endLine: number, raw: string | undefined): number {
	if (!raw) return endLine;
	const body = raw.replace(/^(\r?\n)+/, "").replace(/\r?\n$/, "");
	return endLine - (body.match(/\n/g)?.length ?? 0);
}

/** Imports `file` through `client`; resolves with the report, or rejects with ImportAborted before writing anything. */
export async function importCatalogue(client: CatalogueClient, file: string, opts: ImportOptions = {}): Promise<ImportReport> {
	const dryRun = opts.dryRun === true;
	const batchSize = Math.max(1, Math.min(opts.batchSize ?? 500, 1000));
	const t0 = performance.now();
	const totalBytes = statSync(file).size;
	const report: ImportReport = { file: basename(file), dryRun, rows: 0, created: 0, updated: 0, unchanged: 0, refused: [], stock: { set: 0, unchanged: 0 }, ms: 0, rowsPerSecond: 0 };
	const reference = `import-${Date.now().toString(36)}`;
	const refuse = (line: number, sku: string | undefined, reason: string) => report.refused.push({ line, ...(sku && { sku }), reason });

	const source = createReadStream(file);
	const parser = source.pipe(
		parse({
			bom: true,
			// Rows with a wrong number of cells are refused one by one (format.parseRow), not the whole file.
			relax_column_count: true,
			// A stray quote inside a field is kept as a character rather than swallowing the rows after it.
			relax_quotes: true,
			skip_empty_lines: true,
			info: true,
			raw: true,
			// A record the parser cannot read (a quote never closed) is reported, and the rest still imported.
			skip_records_with_error: true,
			max_record_size: 1_000_000,
		}),
	);
	parser.on("skip", (err: any) => {
		report.rows++;
		refuse(startLine(err.lines ?? 0, err.raw), undefined, `the CSV cannot be read here: ${String(err.message).replace(/ at line \d+.*$/, "")}`);
	});

	let header: Header | undefined;
	let batch: PendingRow[] = [];
	let batchBytes = 0;
	const firstLine = new Map<string, number>();
	// A batch's stock goes to the warehouse while the next batch goes to the catalog: one of each in flight at most.
	let stockInFlight: Promise<void> = Promise.resolve();

	const sendStock = async (items: { line: number; sku: string; warehouseId: string; onHand: number }[]) => {
		const stock = await client.call<{ results: { line?: number; sku: string; warehouseId: string; result: string; reason?: string }[] }>("warehouse.setStockMany", { items, dryRun, reference });
		for (const s of stock.results) {
			if (s.result === "refused") refuse(s.line ?? 0, s.sku, `${STOCK_PREFIX}${s.warehouseId}: ${s.reason}`);
			else if (s.result === "set") report.stock.set++;
			else report.stock.unchanged++;
		}
	};

	const flush = async () => {
		if (!batch.length) return;
		const rows = batch;
		batch = [];
		batchBytes = 0;
		const { results } = await client.call<{ results: { line: number; sku: string; result: string; reason?: string }[] }>("catalog.importProducts", { rows: rows.map(r => ({ line: r.line, product: r.product })), dryRun });
		const accepted = new Set<number>();
		for (const r of results) {
			if (r.result === "refused") refuse(r.line, r.sku, r.reason ?? "refused");
			else {
				accepted.add(r.line);
				if (r.result === "created") report.created++;
				else if (r.result === "updated") report.updated++;
				else report.unchanged++;
			}
		}
		// Stock only for products that are (or, in a dry run, would be) in the catalog.
		const items = rows.filter(r => accepted.has(r.line)).flatMap(r => r.stock.map(s => ({ line: r.line, sku: r.product.sku, warehouseId: s.warehouseId, onHand: s.onHand })));
		const previous = stockInFlight;
		stockInFlight = previous.then(() => (items.length ? sendStock(items) : undefined));
		// The previous batch's stock must be in before this one's catalog answer is used again (and a failure surfaces here).
		await previous;
		opts.onProgress?.({ rows: report.rows, bytes: source.bytesRead, totalBytes, elapsedMs: performance.now() - t0 });
	};

	try {
		for await (const { record, info, raw } of parser as AsyncIterable<{ record: string[]; info: { lines: number }; raw: string }>) {
			const line = startLine(info.lines, raw);
			if (!header) {
				header = await readHeader(client, record);
				continue;
			}
			report.rows++;
			const parsed = parseRow(header, record);
			if (!parsed.ok) {
				refuse(line, parsed.sku, parsed.reason);
				continue;
			}
			const key = parsed.product.sku.toLowerCase();
			const first = firstLine.get(key);
			if (first !== undefined) {
				refuse(line, parsed.product.sku, `duplicate SKU in the file: first on line ${first}`);
				continue;
			}
			firstLine.set(key, line);
			batch.push({ line, product: parsed.product, stock: parsed.stock });
			batchBytes += JSON.stringify(parsed.product).length + 64;
			if (batch.length >= batchSize || batchBytes >= MAX_BATCH_BYTES) await flush();
		}
		if (!header) throw new ImportAborted(["the file is empty: it needs a header row (sku,name,brand,category,price,...)"]);
		await flush();
		await stockInFlight;
	} finally {
		source.destroy();
		// On the way out after a failure, a stock call still running must not become an unhandled rejection.
		stockInFlight.catch(() => undefined);
	}
	report.refused.sort((a, b) => a.line - b.line);
	report.ms = Math.round(performance.now() - t0);
	report.rowsPerSecond = report.ms ? Math.round((report.rows * 1000) / report.ms) : report.rows;
	return report;
}

/** The header, with its stock columns checked against the warehouses that exist. */
async function readHeader(client: CatalogueClient, cells: string[]): Promise<Header> {
	const parsed = parseHeader(cells);
	if (!parsed.ok) throw new ImportAborted(parsed.problems);
	const wanted = [...parsed.header.stock.keys()];
	if (wanted.length) {
		if (!(await client.has("warehouse"))) throw new ImportAborted([`the file has stock columns but no warehouse service is running`]);
		const { items } = await client.call<{ items: { id: string }[] }>("warehouse.listWarehouses", {});
		const known = new Set(items.map(w => w.id));
		const unknown = wanted.filter(w => !known.has(w));
		if (unknown.length) throw new ImportAborted(unknown.map(w => `column "${STOCK_PREFIX}${w}": no warehouse "${w}" (warehouses: ${[...known].join(", ") || "none yet — create one with POST /api/v1/admin/warehouses"})`));
	}
	return parsed.header;
}
