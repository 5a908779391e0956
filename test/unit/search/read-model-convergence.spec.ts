/**
 * The search read model converges (issue 8): stock changes of a sku and rating summaries of a
 * product, delivered in any order, duplicated and concurrently, leave what in-order delivery leaves
 * — the newest stock state (by event stamp) and the summary with the most reviews.
 */
import fc from "fast-check";
import { addRating } from "../../../lib/reviews/moderation";
import { eventStamp, isNewerStamp, isNewerSummary } from "../../../lib/search/freshness";
import { type ConsumerModel, delivered, deliveries, inOrder } from "../support/convergence";

interface StockEvent {
	eventId: string;
	occurredAt: string;
	totalAvailable: number;
}
type StockRow = { stamp: string; inStock: boolean } | null;

const stockModel: ConsumerModel<StockRow, StockEvent> = {
	initial: null,
	apply: (held, e) => (isNewerStamp(held?.stamp, eventStamp(e)) ? { stamp: eventStamp(e), inStock: e.totalAvailable > 0 } : held),
};

/** Stock changes of one sku as the warehouse records them: time moves forward (several may share a millisecond). */
const stockChanges = fc
	.array(fc.record({ gap: fc.integer({ min: 0, max: 3 }), totalAvailable: fc.integer({ min: 0, max: 5 }), eventId: fc.uuid() }), { minLength: 1, maxLength: 8 })
	.map(xs => {
		let t = Date.UTC(2026, 0, 1);
		const out = xs.map(x => ({ eventId: x.eventId, occurredAt: new Date((t += x.gap)).toISOString(), totalAvailable: x.totalAvailable }));
		// Same millisecond: the stamp's tie-break (event id) is the order the warehouse's events are taken in.
		return out.sort((a, b) => eventStamp(a).localeCompare(eventStamp(b)));
	});

describe("search consumer", () => {
	it("keeps the newest stock state of a sku whatever the delivery", () => {
		fc.assert(
			fc.property(stockChanges.chain(es => fc.tuple(fc.constant(es), deliveries(es))), ([es, d]) => {
				const expected = inOrder(stockModel, es);
				expect(expected).toEqual({ stamp: eventStamp(es[es.length - 1]), inStock: es[es.length - 1].totalAvailable > 0 });
				expect(delivered(stockModel, d)).toEqual(expected);
			}),
			{ numRuns: 300 },
		);
	});

	it("keeps the rating summary with the most reviews whatever the delivery", () => {
		type Summary = { average: number; count: number };
		const model: ConsumerModel<Summary | null, Summary> = { initial: null, apply: (held, s) => (isNewerSummary(held, s) && held?.count !== s.count ? s : held) };
		const summaries = fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 8 }).map(rs => {
			let s: Summary = { average: 0, count: 0 };
			return rs.map(r => (s = addRating(s, r)));
		});
		fc.assert(
			fc.property(summaries.chain(ss => fc.tuple(fc.constant(ss), deliveries(ss))), ([ss, d]) => {
				expect(delivered(model, d)).toEqual(inOrder(model, ss));
			}),
			{ numRuns: 300 },
		);
	});

	it("orders stamps by time, then by event id", () => {
		expect(isNewerStamp("2026-01-01T00:00:00.001Z|a", "2026-01-01T00:00:00.002Z|0")).toBe(true);
		expect(isNewerStamp("2026-01-01T00:00:00.001Z|b", "2026-01-01T00:00:00.001Z|a")).toBe(false);
		expect(isNewerStamp(null, "x")).toBe(true);
	});
});
