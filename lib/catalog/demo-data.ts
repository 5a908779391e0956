/**
 * The demo catalog: deterministic (seeded generator, ids derived from SKUs), so every install
 * and every test sees the same products, and the warehouse can seed stock for the same SKUs.
 */
import { createHash } from "node:crypto";

export interface DemoCategory {
	id: string;
	slug: string;
	name: string;
	parentSlug: string | null;
}

export interface DemoProduct {
	id: string;
	sku: string;
	name: string;
	description: string;
	brand: string;
	categorySlug: string;
	price: { amount: number; currency: "USD" };
	weightGrams: number;
	attributes: Record<string, string | number | boolean>;
	images: string[];
}

/** A UUID-shaped id derived from a name, identical on every install. */
export function stableId(kind: string, key: string): string {
	const h = createHash("sha1").update(`${kind}:${key}`).digest("hex");
	return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** mulberry32: small, fast and good enough for demo data. */
function prng(seed: number): () => number {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

const CATEGORY_TREE: [slug: string, name: string, parent: string | null][] = [
	["audio", "Audio", null],
	["headphones", "Headphones", "audio"],
	["speakers", "Speakers", "audio"],
	["computers", "Computers", null],
	["laptops", "Laptops", "computers"],
	["computer-accessories", "Computer Accessories", "computers"],
	["home-kitchen", "Home & Kitchen", null],
	["sports-outdoors", "Sports & Outdoors", null],
	["books", "Books", null],
	["toys-games", "Toys & Games", null],
	["beauty", "Beauty", null],
	["fashion", "Fashion", null],
];

export const DEMO_CATEGORIES: DemoCategory[] = CATEGORY_TREE.map(([slug, name, parentSlug]) => ({
	id: stableId("category", slug),
	slug,
	name,
	parentSlug,
}));

const BRANDS = ["Aurora", "Nimbus", "Vertex", "Lumen", "Koda", "Solace", "Brightline", "Northpeak", "Everwood", "Pixelforge"];

/** Per leaf category: code, product kinds, price range in cents, weight range in grams. */
const KINDS: Record<string, { code: string; kinds: string[]; price: [number, number]; weight: [number, number] }> = {
	headphones: { code: "HP", kinds: ["Wireless Headphones", "Noise-Cancelling Headphones", "Studio Headphones", "Sport Earbuds", "Over-Ear Headphones"], price: [2900, 34900], weight: [40, 400] },
	speakers: { code: "SP", kinds: ["Bluetooth Speaker", "Smart Speaker", "Soundbar", "Bookshelf Speakers", "Party Speaker"], price: [3900, 49900], weight: [300, 6000] },
	laptops: { code: "LT", kinds: ["Ultrabook 13", "Laptop 15", "Gaming Laptop 16", "Chromebook 14", "Workstation Laptop 17"], price: [39900, 249900], weight: [1100, 3200] },
	"computer-accessories": { code: "CA", kinds: ["Mechanical Keyboard", "Wireless Mouse", "USB-C Hub", "Laptop Stand", "4K Webcam"], price: [1900, 17900], weight: [80, 1500] },
	"home-kitchen": { code: "HK", kinds: ["Espresso Machine", "Chef Knife", "Cast Iron Skillet", "Blender", "Desk Lamp"], price: [1500, 59900], weight: [200, 8000] },
	"sports-outdoors": { code: "SO", kinds: ["Trail Running Shoes", "Camping Tent", "Yoga Mat", "Head Torch", "Hiking Backpack"], price: [1200, 39900], weight: [100, 4500] },
	books: { code: "BK", kinds: ["Cookbook", "Field Guide", "Travel Journal", "Design Handbook", "Mystery Novel"], price: [900, 4900], weight: [200, 1200] },
	"toys-games": { code: "TG", kinds: ["Board Game", "Puzzle 1000", "Building Blocks Set", "Remote Control Car", "Card Game"], price: [900, 12900], weight: [150, 2500] },
	beauty: { code: "BT", kinds: ["Face Serum", "Hair Dryer", "Electric Toothbrush", "Moisturiser", "Beard Trimmer"], price: [900, 19900], weight: [50, 900] },
	fashion: { code: "FS", kinds: ["Rain Jacket", "Leather Wallet", "Wool Scarf", "Canvas Sneakers", "Sunglasses"], price: [1500, 24900], weight: [50, 1200] },
};

const ADJECTIVES = ["Classic", "Pro", "Air", "Max", "Lite", "Plus", "Edge", "Prime", "Go", "One"];
const COLORS = ["black", "white", "graphite", "navy", "sand", "forest", "red", "silver"];

function generateProducts(): DemoProduct[] {
	const rand = prng(20261124);
	const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
	const between = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
	const products: DemoProduct[] = [];
	const names = new Set<string>();
	for (const [slug, spec] of Object.entries(KINDS)) {
		for (let i = 0; i < 13; i++) {
			const kind = spec.kinds[i % spec.kinds.length];
			let name = `${pick(BRANDS)} ${kind} ${pick(ADJECTIVES)}`;
			while (names.has(name)) name = `${pick(BRANDS)} ${kind} ${pick(ADJECTIVES)}`;
			names.add(name);
			const sku = `${spec.code}-${String(1001 + i)}`;
			const brand = name.split(" ")[0];
			// Prices end in 99 cents, as shops like them.
			const price = Math.floor(between(spec.price[0], spec.price[1]) / 100) * 100 + 99;
			products.push({
				id: stableId("product", sku),
				sku,
				name,
				description: `${name}: a ${kind.toLowerCase()} by ${brand}, built for everyday use. Ships in recyclable packaging.`,
				brand,
				categorySlug: slug,
				price: { amount: price, currency: "USD" },
				weightGrams: between(spec.weight[0], spec.weight[1]),
				attributes: { color: pick(COLORS), warrantyMonths: pick([12, 24, 36]) },
				images: [`https://images.example.com/products/${sku.toLowerCase()}.jpg`],
			});
		}
	}
	return products;
}

export const DEMO_PRODUCTS: DemoProduct[] = generateProducts();
