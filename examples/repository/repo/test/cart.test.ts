import { describe, expect, test } from "bun:test";
import { receiptTotal, totalCents } from "../src/cart";
import { bulkDiscountPercent } from "../src/discount";
import { formatCents } from "../src/money";

describe("money", () => {
  test("formats cents as dollars", () => {
    expect(formatCents(123456)).toBe("$1,234.56");
    expect(formatCents(5)).toBe("$0.05");
  });
});

describe("bulk discount", () => {
  test("small orders pay full price", () => expect(bulkDiscountPercent(9)).toBe(0));
  test("10 units get 10% off", () => expect(bulkDiscountPercent(10)).toBe(10));
  test("50 units get 20% off", () => expect(bulkDiscountPercent(50)).toBe(20));
});

describe("cart", () => {
  test("totals lines after their discounts", () => {
    const lines = [
      { sku: "mug", unitCents: 1200, units: 10 }, // 12,000 - 10% = 10,800
      { sku: "pen", unitCents: 150, units: 3 }, //       450
    ];
    expect(totalCents(lines)).toBe(11250);
    expect(receiptTotal(lines)).toBe("Total: $112.50");
  });
});
