"""Every request huggingface_hub sends waits a bounded time.

huggingface_hub 1.x-2.x sends some requests with ``timeout=None`` (``HfApi.repo_info``, the first call of
``snapshot_download``; ``create_repo``), which its httpx client reads as "wait for ever": a proxy that accepts
the connection and never answers hung the hub import for more than 400 s with no output (issue 29). A request
hook on the client huggingface_hub builds (its own ``default_client_factory``) fills every missing timeout.
"""

from __future__ import annotations

import functools

from maximalcai.patches import require

require(__name__)

CONNECT_S = 10.0
READ_S = 30.0  # each read or write of the connection, not the whole transfer


def bound(request) -> None:
    """httpx request hook: every timeout the request left unset (None) gets the limit."""
    timeout = dict(request.extensions.get("timeout") or {})
    for key, limit in (("connect", CONNECT_S), ("read", READ_S), ("write", READ_S), ("pool", CONNECT_S)):
        if timeout.get(key) is None:
            timeout[key] = limit
    request.extensions["timeout"] = timeout


@functools.cache
def bound_hub_requests() -> None:
    """Make huggingface_hub's shared client add ``bound`` to every request (once per process)."""
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils._http import default_client_factory

    def factory():
        client = default_client_factory()
        client.event_hooks = {**client.event_hooks, "request": [*client.event_hooks["request"], bound]}
        return client

    set_client_factory(factory)
