/** Bulk pricing: a line of 10 units or more gets 10% off, 50 or more 20% off. */
export function bulkDiscountPercent(units: number): number {
  if (units >= 50) return 20;
  if (units > 10) return 10;
  return 0;
}

/** The price of a line after its bulk discount, in whole cents (rounded half up). */
export function discounted(cents: number, units: number): number {
  return Math.round((cents * (100 - bulkDiscountPercent(units))) / 100);
}
