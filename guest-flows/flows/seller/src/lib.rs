//! `seller`: the responder to `buyer`. Receives the request and the bid, asks ten per
//! letter of the item's name, and accepts a bid at or above that price.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Request {
    item: String,
    #[serde(default)]
    pause_ms: u64,
}

#[derive(Deserialize)]
struct Bid {
    bid: u64,
}

#[derive(Serialize)]
struct Output {
    buyer: String,
    item: String,
    bid: u64,
    price: u64,
    accepted: bool,
}

fn seller(ctx: &Ctx, _input: serde_json::Value) -> Result<Output> {
    let Some(buyer) = ctx.initiator() else {
        return Err("seller runs only as the responder to a buyer's session".into());
    };
    let request: Request = buyer.receive()?;
    if request.pause_ms > 0 {
        ctx.sleep(Duration::from_millis(request.pause_ms));
    }
    let bid: Bid = buyer.receive()?;
    let price = 10 * request.item.chars().count() as u64;
    let accepted = bid.bid >= price;
    buyer.send(&serde_json::json!({ "accepted": accepted, "price": price }))?;
    Ok(Output { buyer: buyer.counterparty(), item: request.item, bid: bid.bid, price, accepted })
}

sluice_flow::flow!(seller);
