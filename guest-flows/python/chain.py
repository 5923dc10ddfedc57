"""chain: calls itself with depth - 1 until depth 0; returns {"depth": d, "sum": d + … + 0}.
With "next", calls that flow instead of itself (a chain across languages)."""

from sluice_flow import flow


def chain(ctx, input):
    depth = input["depth"]
    if depth == 0:
        return {"depth": 0, "sum": 0}
    below_flow = input.get("next", ctx.flow_name)
    below = ctx.call(below_flow, {"depth": depth - 1})
    return {"depth": depth, "sum": below["sum"] + depth}


WitWorld = flow(chain)
