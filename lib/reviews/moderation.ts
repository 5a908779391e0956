/**
 * Automatic review moderation: a review with a profanity or spam signal is held for an admin
 * instead of being published. Pure and deterministic; the reasons are stored with the review.
 */
export interface ReviewText {
	title: string;
	body: string;
}

export type ModerationReason = "PROFANITY" | "LINK" | "SPAM_PHRASE" | "SHOUTING" | "REPEATED_CHARACTERS" | "CONTACT_DETAILS";

export interface ModerationDecision {
	status: "PUBLISHED" | "PENDING";
	reasons: ModerationReason[];
}

// Kept short and matched on word boundaries so "Scunthorpe" or "class" pass.
const PROFANITY = ["fuck", "fucking", "shit", "bitch", "bastard", "asshole", "dick", "cunt", "wanker", "bollocks"];
const SPAM_PHRASES = ["buy now", "click here", "promo code", "discount code", "free money", "visit my", "work from home", "limited offer", "crypto", "whatsapp"];

const profanityRe = new RegExp(`\\b(${PROFANITY.join("|")})\\b`, "i");
const linkRe = /\b(https?:\/\/|www\.)\S+|\b[a-z0-9-]+\.(com|net|org|io|ru|biz|xyz)\b/i;
const contactRe = /[\w.+-]+@[\w-]+\.[\w.]+|\+?\d[\d\s().-]{8,}\d/;
const repeatedRe = /(.)\1{6,}/;

function shouting(text: string): boolean {
	const letters = text.replace(/[^A-Za-z]/g, "");
	if (letters.length < 20) return false;
	const upper = letters.replace(/[^A-Z]/g, "").length;
	return upper / letters.length > 0.7;
}

export function moderate(review: ReviewText): ModerationDecision {
	const text = `${review.title}\n${review.body}`;
	const lower = text.toLowerCase();
	const reasons: ModerationReason[] = [];
	if (profanityRe.test(text)) reasons.push("PROFANITY");
	if (linkRe.test(text)) reasons.push("LINK");
	if (contactRe.test(text)) reasons.push("CONTACT_DETAILS");
	if (SPAM_PHRASES.some(p => lower.includes(p))) reasons.push("SPAM_PHRASE");
	if (shouting(text)) reasons.push("SHOUTING");
	if (repeatedRe.test(text)) reasons.push("REPEATED_CHARACTERS");
	return { status: reasons.length ? "PENDING" : "PUBLISHED", reasons };
}

/** The rating summary after adding one published rating (1..5) to it. */
export function addRating(summary: { average: number; count: number }, rating: number): { average: number; count: number } {
	const count = summary.count + 1;
	const average = Math.round(((summary.average * summary.count + rating) / count) * 100) / 100;
	return { average, count };
}
