"""seller: the responder to `buyer`. Receives the request and the bid, asks ten per letter
of the item's name, and accepts a bid at or above that price."""

from sluice_flow import FlowFailure, flow


def seller(ctx, _input):
    buyer = ctx.initiator()
    if buyer is None:
        raise FlowFailure("seller runs only as the responder to a buyer's session")
    request = buyer.receive()
    if request.get("pause_ms", 0) > 0:
        ctx.sleep(request["pause_ms"])
    bid = buyer.receive()["bid"]
    price = 10 * len(request["item"])
    accepted = bid >= price
    buyer.send({"accepted": accepted, "price": price})
    return {"buyer": buyer.counterparty, "item": request["item"], "bid": bid, "price": price, "accepted": accepted}


WitWorld = flow(seller)
