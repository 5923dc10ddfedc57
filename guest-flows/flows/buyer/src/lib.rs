//! `buyer`: bids for an item over a session with a seller (the flow registered
//! `initiated-by = "buyer"`). Sends the request, then the bid, and waits for the answer;
//! a trade is published on the `trades` topic. `pause_ms` asks the seller to pause between
//! the two messages (the durability test crashes the node in that pause).

use serde::{Deserialize, Serialize};
use sluice_flow::{Ctx, Result};

#[derive(Deserialize)]
struct Input {
    /// The seller's party; this node's own identity when absent.
    party: Option<String>,
    item: String,
    bid: u64,
    #[serde(default)]
    pause_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Answer {
    accepted: bool,
    price: u64,
}

#[derive(Serialize)]
struct Output {
    item: String,
    price: u64,
    accepted: bool,
}

fn buyer(ctx: &Ctx, input: Input) -> Result<Output> {
    let party = input.party.unwrap_or_else(|| ctx.invocation().our_identity.clone());
    let seller = ctx.open_session(&party);
    seller.send(&serde_json::json!({ "item": input.item, "pause_ms": input.pause_ms }))?;
    seller.send(&serde_json::json!({ "bid": input.bid }))?;
    let answer: Answer = seller.receive()?;
    if answer.accepted {
        ctx.publish("trades", &serde_json::json!({ "item": input.item, "price": answer.price }))?;
    }
    Ok(Output { item: input.item, price: answer.price, accepted: answer.accepted })
}

sluice_flow::flow!(buyer);
