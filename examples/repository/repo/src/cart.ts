import { discounted } from "./discount";
import { formatCents } from "./money";

export type Line = { sku: string; unitCents: number; units: number };

/** The cart's total in cents: each line's price after its bulk discount. */
export function totalCents(lines: Line[]): number {
  return lines.reduce((sum, line) => sum + discounted(line.unitCents * line.units, line.units), 0);
}

/** The total as a customer sees it on the receipt. */
export function receiptTotal(lines: Line[]): string {
  return `Total: ${formatCents(totalCents(lines))}`;
}
