"""raises: raises a Python exception carrying `message`."""

from sluice_flow import flow


def raises(ctx, input):
    raise ValueError(input["message"])


WitWorld = flow(raises)
