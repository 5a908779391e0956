/**
 * Tracking numbers: "MC" and 12 characters of an alphabet without look-alikes (no 0/O, 1/I),
 * so they read aloud and type well. 32 symbols: 60 random bits.
 */
import { randomBytes } from "node:crypto";

const ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
const PATTERN = /^MC[2-9A-HJ-NP-Z]{12}$/;

export function newTrackingNumber(random: (n: number) => Uint8Array = randomBytes): string {
	// 32 divides 256, so taking each byte modulo 32 favours no symbol.
	return `MC${[...random(12)].map(b => ALPHABET[b % 32]).join("")}`;
}

/** Whether `s` could be a tracking number (normalised to upper case first). */
export function isTrackingNumber(s: string): boolean {
	return PATTERN.test(s.toUpperCase());
}

/**
 * What `fulfillment.fulfillment.delivered` does to the parcel's shipment (issue 8): none yet → retry
 * later (its creation is not visible yet; never acknowledged as a no-op); not delivered → DELIVERED
 * with one tracking event; already delivered → nothing (a repeat).
 */
export function deliveryDecision(shipment: { status: string } | null | undefined): "retry" | "deliver" | "noop" {
	if (!shipment) return "retry";
	return shipment.status === "DELIVERED" ? "noop" : "deliver";
}
