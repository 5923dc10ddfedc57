"""Write Sluice flows in Python: a thin layer over the bindings componentize-py generates
from the sluice:flow WIT world. Payloads travel as JSON, as in the Rust SDK, and errors read
the same, so one scenario file serves a flow's builds in every language.

    from sluice_flow import flow

    def hello(ctx, input):
        ctx.progress("greeting")
        return {"greeting": f"Hello, {input['name']}!"}

    WitWorld = flow(hello)
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, sessions, types


def _encode(value):
    return json.dumps(value, separators=(",", ":")).encode()


def describe(error):
    """The text of a flow-error, as the Rust SDK writes it."""
    if isinstance(error, types.FlowError_Failed):
        return f"failed: {error.value}"
    if isinstance(error, types.FlowError_Rejected):
        return f"rejected: {error.value}"
    if isinstance(error, types.FlowError_TimedOut):
        return "timed out"
    return "cancelled"


class FlowFailure(Exception):
    """Raise to fail the flow with this message."""


class SubflowError(FlowFailure):
    """A subflow produced no output; `error` is the WIT flow-error."""

    def __init__(self, flow, error):
        self.flow = flow
        self.error = error
        super().__init__(f"subflow {flow}: {describe(error)}")


class Child:
    """A subflow started with Ctx.start, to be awaited with Ctx.join."""

    def __init__(self, flow, id):
        self.flow = flow
        self.id = id


class SessionError(FlowFailure):
    """A session with a counterparty failed (unknown party, no responder, it ended)."""

    def __init__(self, party, message):
        self.party = party
        super().__init__(f"session with {party}: {message}")


class Session:
    """A session with a counterparty's flow: ordered JSON messages both ways."""

    def __init__(self, inner):
        self._inner = inner

    @property
    def counterparty(self):
        return self._inner.counterparty()

    def send(self, value):
        """Send `value`; the first send (or receive) starts the counterparty's responder."""
        try:
            self._inner.send(_encode(value))
        except Err as e:
            raise SessionError(self.counterparty, e.value) from None

    def receive(self):
        """The counterparty's next message (a suspension point)."""
        try:
            return json.loads(self._inner.receive())
        except Err as e:
            raise SessionError(self.counterparty, e.value) from None


class Ctx:
    """The running flow's view of the node."""

    def __init__(self, invocation):
        self.invocation = invocation

    @property
    def flow_name(self):
        return self.invocation.flow

    def call(self, flow, value):
        """Start `flow` and wait for its output (a suspension point)."""
        try:
            return json.loads(host.call(flow, _encode(value)))
        except Err as e:
            raise SubflowError(flow, e.value) from None

    def start(self, flow, value):
        try:
            return Child(flow, host.start(flow, _encode(value), host.StartOptions(priority=None)))
        except Err as e:
            raise SubflowError(flow, e.value) from None

    def join(self, child):
        """Wait for a child started with start (a suspension point)."""
        try:
            return json.loads(host.join(child.id))
        except Err as e:
            raise SubflowError(child.flow, e.value) from None

    def cancel(self, child):
        """Cancel a child started with start, with all its descendants; join then raises
        SubflowError (cancelled), or returns its output when it ended first."""
        try:
            host.cancel(child.id)
        except Err as e:
            raise SubflowError(child.flow, e.value) from None

    def parallel(self, flow, values):
        """Run `flow` once per value, concurrently; results in order. Raises on the first failure."""
        results = host.parallel(flow, [_encode(v) for v in values])
        out = []
        for r in results:
            if isinstance(r, Err):
                raise SubflowError(flow, r.value)
            out.append(json.loads(r.value))
        return out

    def sleep(self, ms):
        host.sleep(ms)

    def now_ms(self):
        return host.now()

    def random(self):
        return host.random()

    def publish(self, topic, value):
        """Publish an event on `topic`: the next wait_event on it takes it."""
        host.publish(topic, _encode(value))

    def wait_event(self, topic, timeout_ms=None):
        """The next event on `topic`, or None when `timeout_ms` passed first (a suspension point)."""
        event = host.wait_event(topic, timeout_ms)
        return None if event is None else json.loads(event)

    def open_session(self, party):
        """A session with `party`; its responder starts at the first send or receive."""
        return Session(sessions.Session(party))

    def initiator(self):
        """In a responder flow, the session its initiator opened; None otherwise."""
        inner = sessions.initiator()
        return None if inner is None else Session(inner)

    def progress(self, step):
        host.progress(step)

    def info(self, message):
        host.log(types.LogLevel.INFO, message)


def flow(handler):
    """Export `handler(ctx, input) -> output` as this component's flow."""

    class _Flow(wit_world.WitWorld):
        def run(self, invocation, input):
            try:
                value = json.loads(input)
            except ValueError as e:
                raise Err(f"bad input for {invocation.flow}: {e}")
            try:
                return _encode(handler(Ctx(invocation), value))
            except FlowFailure as e:
                raise Err(str(e))
            except Exception as e:  # a Python exception fails the flow with its message
                raise Err(f"{type(e).__name__}: {e}")

    return _Flow
