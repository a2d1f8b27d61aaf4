/** Formats an amount in cents as dollars: 123456 → "$1,234.56". */
export function formatCents(cents: number): string {
  const dollars = Math.floor(cents / 100).toLocaleString("en-US");
  return `$${dollars}.${String(cents % 100).padStart(2, "0")}`;
}
