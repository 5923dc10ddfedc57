"""hello: transforms {"name": N} into {"greeting": "Hello, N!"}."""

from sluice_flow import FlowFailure, flow


def hello(ctx, input):
    name = input.get("name") if isinstance(input, dict) else None
    if not isinstance(name, str):
        raise FlowFailure(f"bad input for {ctx.flow_name}: missing field `name`")
    ctx.progress("greeting")
    return {"greeting": f"Hello, {name}!"}


WitWorld = flow(hello)
