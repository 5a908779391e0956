/**
 * Which of two states of a read model is newer (issue 8: "an older event never overwrites newer
 * state"). Pure, unit- and property-tested; the consumers (search, catalog) apply it as a
 * conditional upsert (lib/db/newer-upsert.ts), so concurrent handlers cannot undo each other.
 *
 * - Stock of a sku (`warehouse.stock.changed`): stamped `occurredAt|eventId` — ISO 8601 sorts as
 *   text, and the event id breaks a tie between events of the same millisecond the same way everywhere.
 * - A product's rating summary (`reviews.review.published`): published reviews only grow, and
 *   reviews publishes them one at a time under a lock, so the summary with more reviews is newer.
 */

/** The stamp of an event: compares as text in the order the events happened. */
export function eventStamp(e: { occurredAt: string; eventId: string }): string {
	return `${e.occurredAt}|${e.eventId}`;
}

/** Whether a state stamped `incoming` replaces the one held (none held: yes). */
export function isNewerStamp(held: string | null | undefined, incoming: string): boolean {
	return held === null || held === undefined || held < incoming;
}

/** Whether a rating summary replaces the one held: more reviews, or the same count (the same summary). */
export function isNewerSummary(held: { count: number } | null | undefined, incoming: { count: number }): boolean {
	return !held || Number(held.count) <= incoming.count;
}
