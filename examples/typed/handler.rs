//! A typed handler: the input JSON is deserialized into `Order`, the
//! `Total` is serialized as the output, and an `Err` fails the execution
//! with the error's text.
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Order {
    items: Vec<Item>,
    coupon: Option<String>,
}

#[derive(Deserialize)]
pub struct Item {
    name: String,
    cents: u64,
    quantity: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Total {
    item_count: u32,
    total_cents: u64,
}

#[derive(Debug)]
pub enum OrderError {
    Empty,
    UnknownCoupon(String),
}

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrderError::Empty => write!(f, "the order has no items"),
            OrderError::UnknownCoupon(code) => write!(f, "unknown coupon {code:?}"),
        }
    }
}

pub fn handler(order: Order) -> Result<Total, OrderError> {
    if order.items.is_empty() {
        return Err(OrderError::Empty);
    }
    let discount_percent = match order.coupon.as_deref() {
        None => 0,
        Some("TENOFF") => 10,
        Some(other) => return Err(OrderError::UnknownCoupon(other.to_owned())),
    };
    for item in &order.items {
        eprintln!("{} x {} at {} cents", item.quantity, item.name, item.cents);
    }
    let gross: u64 = order.items.iter().map(|i| i.cents * u64::from(i.quantity)).sum();
    Ok(Total {
        item_count: order.items.iter().map(|i| i.quantity).sum(),
        total_cents: gross - gross * discount_percent / 100,
    })
}
