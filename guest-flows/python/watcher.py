"""watcher: takes up to `count` events from `topic`, giving up on the first wait that lasts
longer than `timeout_ms`."""

from sluice_flow import flow


def watcher(ctx, input):
    events = []
    while len(events) < input["count"]:
        event = ctx.wait_event(input["topic"], input.get("timeout_ms"))
        if event is None:
            return {"events": events, "timed_out": True}
        events.append(event)
    return {"events": events, "timed_out": False}


WitWorld = flow(watcher)
