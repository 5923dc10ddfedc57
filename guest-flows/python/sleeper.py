"""sleeper: sleeps `ms` milliseconds, `times` times (default once)."""

from sluice_flow import flow


def sleeper(ctx, input):
    times = input.get("times", 1)
    for _ in range(times):
        ctx.sleep(input["ms"])
    return {"slept_ms": input["ms"] * times}


WitWorld = flow(sleeper)
