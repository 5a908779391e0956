/**
 * The catalog's rating summaries converge (issue 8): `reviews.review.published` summaries, delivered
 * in any order, duplicated and concurrently, leave the summary of all published reviews — the one
 * in-order delivery leaves — because an older summary (fewer reviews) never replaces a newer one.
 * The catalog applies the same rule in SQL (`rating_count <= count`).
 */
import fc from "fast-check";
import { addRating } from "../../../lib/reviews/moderation";
import { isNewerSummary } from "../../../lib/search/freshness";
import { type ConsumerModel, delivered, deliveries, inOrder } from "../support/convergence";

type Summary = { average: number; count: number };

/** The summaries reviews publishes, one per review, in order. */
const published = fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 8 }).map(ratings => {
	const out: Summary[] = [];
	let s: Summary = { average: 0, count: 0 };
	for (const r of ratings) out.push((s = addRating(s, r)));
	return out;
});

const summaryModel: ConsumerModel<Summary | null, Summary> = {
	initial: null,
	apply: (held, incoming) => (isNewerSummary(held, incoming) && (held?.count !== incoming.count || held.average !== incoming.average) ? incoming : held),
};

describe("catalog consumer (rating summaries)", () => {
	it("ends with the summary of every published review whatever the delivery", () => {
		fc.assert(
			fc.property(published.chain(ss => fc.tuple(fc.constant(ss), deliveries(ss))), ([ss, d]) => {
				const expected = inOrder(summaryModel, ss);
				expect(expected).toEqual(ss[ss.length - 1]);
				expect(delivered(summaryModel, d)).toEqual(expected);
			}),
			{ numRuns: 300 },
		);
	});

	it("refuses an older summary", () => {
		expect(isNewerSummary({ count: 3 }, { count: 2 })).toBe(false);
		expect(isNewerSummary({ count: 3 }, { count: 4 })).toBe(true);
		expect(isNewerSummary(null, { count: 1 })).toBe(true);
	});
});
