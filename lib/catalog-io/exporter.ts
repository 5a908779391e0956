/**
 * Catalogue export: every product that is not archived, in SKU order, in the format import reads
 * (lib/catalog-io/format.ts) — so an exported file imports back as "unchanged". Written with
 * csv-stringify, a page of 500 products at a time, with their stock per warehouse when the
 * warehouse service runs.
 */
import { once } from "node:events";
import type { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import { stringify } from "csv-stringify";
import type { CatalogueClient } from "./client";
import { type ExportProduct, exportHeader, formatRow } from "./format";

export interface ExportReport {
	products: number;
	warehouses: string[];
	ms: number;
}

const PAGE = 500;

/** Writes the catalogue to `out` (which it ends); `onProgress` after each page with the products written so far. */
export async function exportCatalogue(client: CatalogueClient, out: Writable, onProgress?: (products: number) => void): Promise<ExportReport> {
	const t0 = performance.now();
	const withStock = await client.has("warehouse");
	const warehouses = withStock ? (await client.call<{ items: { id: string }[] }>("warehouse.listWarehouses", {})).items.map(w => w.id) : [];
	const csv = stringify();
	csv.pipe(out);
	const write = async (row: string[]) => {
		if (!csv.write(row)) await once(csv, "drain");
	};
	await write(exportHeader(warehouses));
	let products = 0;
	for (let after: string | undefined; ; ) {
		const page = await client.call<{ items: ExportProduct[]; next: string | null }>("catalog.exportProducts", { ...(after !== undefined && { after }), limit: PAGE });
		const levels = warehouses.length && page.items.length ? await client.call<Record<string, Record<string, number>>>("warehouse.stockLevels", { skus: page.items.map(p => p.sku) }) : {};
		for (const p of page.items) await write(formatRow(p, levels[p.sku] ?? {}, warehouses));
		products += page.items.length;
		onProgress?.(products);
		if (!page.next) break;
		after = page.next;
	}
	csv.end();
	// stdout is never ended by a pipe: there, the stringifier having flushed is the end.
	await finished(out === process.stdout ? csv : out);
	return { products, warehouses, ms: Math.round(performance.now() - t0) };
}
