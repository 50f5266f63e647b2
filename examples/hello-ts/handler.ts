// A TypeScript handler: the default export receives the parsed input JSON
// and its return value (or the value its promise resolves to) is the output.
// A thrown error fails the execution with the error's message.

interface Order {
  items: Item[];
  coupon?: string | null;
}

interface Item {
  name: string;
  cents: number;
  quantity: number;
}

const DISCOUNT_PERCENT: Record<string, number> = { TENOFF: 10 };

export default async function handler(order: Order) {
  if (!Array.isArray(order.items) || order.items.length === 0) {
    throw new Error("the order has no items");
  }
  const discount = order.coupon ? DISCOUNT_PERCENT[order.coupon] : 0;
  if (discount === undefined) {
    throw new Error(`unknown coupon ${JSON.stringify(order.coupon)}`);
  }
  for (const item of order.items) {
    console.log(`${item.quantity} x ${item.name} at ${item.cents} cents`);
  }
  const gross = order.items.reduce((sum, i) => sum + i.cents * i.quantity, 0);
  return {
    itemCount: order.items.reduce((sum, i) => sum + i.quantity, 0),
    totalCents: gross - Math.floor((gross * discount) / 100),
  };
}
