"""fanout: starts n children of flow `child` (default hello) and awaits them all, in order.
Each child gets `input` when given, else {"name": "child-<i>"}; "parallel": true uses one
parallel host call instead of start + join."""

from sluice_flow import flow


def fanout(ctx, input):
    child = input.get("child", "hello")
    inputs = [input["input"] if "input" in input else {"name": f"child-{i}"} for i in range(input["n"])]
    if input.get("parallel", False):
        results = ctx.parallel(child, inputs)
    else:
        children = [ctx.start(child, i) for i in inputs]
        results = [ctx.join(c) for c in children]
    ctx.progress("fanned out")
    return {"results": results}


WitWorld = flow(fanout)
