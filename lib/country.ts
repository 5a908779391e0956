/**
 * A country code where API.md says "ISO 3166 alpha-2": one of the officially assigned codes, in
 * capitals. The list is validator.js's (`CountryCodes` of isISO31661Alpha2, kept with the ISO
 * maintenance agency's changes); a pattern of two capitals alone took `XX` or `ZZ`, and an order
 * shipped to "XX" was confirmed and priced as "anywhere else".
 */
import { CountryCodes } from "validator/lib/isISO31661Alpha2";

/** `^(?:AD|AE|…|ZW)$`. */
export const COUNTRY_PATTERN = new RegExp(`^(?:${[...CountryCodes].sort().join("|")})$`);

/** The fastest-validator rule of a country code (422 with the message below otherwise). */
export const COUNTRY_RULE = { type: "string", pattern: COUNTRY_PATTERN, messages: { stringPattern: "country must be an officially assigned ISO 3166-1 alpha-2 code in capitals, e.g. US" } };
