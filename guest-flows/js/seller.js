// seller: the responder to `buyer`. Receives the request and the bid, asks ten per letter
// of the item's name, and accepts a bid at or above that price.
import { FlowFailure, flow } from './sluice-flow.js';

export const run = flow((ctx, _input) => {
  const buyer = ctx.initiator();
  if (buyer === undefined) throw new FlowFailure("seller runs only as the responder to a buyer's session");
  const request = buyer.receive();
  if ((request.pause_ms ?? 0) > 0) ctx.sleep(request.pause_ms);
  const { bid } = buyer.receive();
  const price = 10 * [...request.item].length;
  const accepted = bid >= price;
  buyer.send({ accepted, price });
  return { buyer: buyer.counterparty, item: request.item, bid, price, accepted };
});
