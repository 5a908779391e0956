import { addRating, moderate } from "../../../lib/reviews/moderation";

describe("review moderation", () => {
	it("publishes an ordinary review", () => {
		expect(moderate({ title: "Great sound", body: "Comfortable for long flights, battery lasts all week." })).toEqual({ status: "PUBLISHED", reasons: [] });
	});

	it("does not flag words that merely contain a rude substring", () => {
		expect(moderate({ title: "Classic", body: "Bought it in Scunthorpe, works as described." }).status).toBe("PUBLISHED");
	});

	it("holds profanity, links, contact details, spam phrases, shouting and repeated characters", () => {
		expect(moderate({ title: "meh", body: "this is shit" }).reasons).toEqual(["PROFANITY"]);
		expect(moderate({ title: "deal", body: "see www.cheap-stuff.example for more" }).reasons).toContain("LINK");
		expect(moderate({ title: "call", body: "ring me on +1 555 123 4567 today" }).reasons).toContain("CONTACT_DETAILS");
		expect(moderate({ title: "wow", body: "Use promo code SAVE50 at checkout" }).reasons).toContain("SPAM_PHRASE");
		expect(moderate({ title: "WORST PRODUCT EVER", body: "IT BROKE AFTER ONE DAY AND NOBODY ANSWERS" }).reasons).toContain("SHOUTING");
		expect(moderate({ title: "good", body: "sooooooooo good" }).reasons).toEqual(["REPEATED_CHARACTERS"]);
	});

	it("holds a review with any signal for an admin", () => {
		expect(moderate({ title: "click here", body: "fine" }).status).toBe("PENDING");
	});
});

describe("rating summary", () => {
	it("averages to two decimals as ratings arrive", () => {
		let s = { average: 0, count: 0 };
		for (const r of [5, 4, 4]) s = addRating(s, r);
		expect(s).toEqual({ average: 4.33, count: 3 });
	});
});
