/**
 * Rows of the catalog's tables as the catalog's code uses them (shared by the service file and
 * its mixins).
 */
import type { ProductRecord } from "../../lib/catalog/product";
import { jsonColumn } from "../../mixins/db.mixin";

/** A raw products row with its JSON columns parsed (SQLite hands them back as text). */
export function productRecord(row: any): ProductRecord {
	return { ...row, attributes: jsonColumn<Record<string, unknown>>(row.attributes, {}), images: jsonColumn<string[]>(row.images, []) };
}
