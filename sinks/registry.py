"""Providers by name: an endpoint's ``settings.sink`` picks one (activity-history endpoints default to it)."""

from __future__ import annotations

import os
from pathlib import Path

from .contract import Sink, SinkContext
from .history import ActivityHistorySink
from .webhook import WebhookSink

PROVIDERS: dict[str, type[Sink]] = {
    WebhookSink.provider: WebhookSink,
    ActivityHistorySink.provider: ActivityHistorySink,
}


def provider_for(provider_type: str, settings: dict) -> type[Sink]:
    name = settings.get("sink") or ("activity-history" if provider_type == "activity-history" else None)
    if not name:
        raise ValueError("endpoint settings need `sink:` naming a provider: " + ", ".join(sorted(PROVIDERS)))
    if name not in PROVIDERS:
        raise ValueError(f"unknown sink provider {name!r}; known: {', '.join(sorted(PROVIDERS))}")
    return PROVIDERS[name]


def check_endpoint_settings(name: str, provider_type: str, settings: dict) -> None:
    """Refuse an endpoint whose provider cannot work with its settings (ValueError naming the endpoint)."""
    try:
        provider_for(provider_type, settings).check_settings(settings)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"endpoint {name}: {exc}") from None


def secret_lookup(settings: dict):
    """``ctx.secret("hmac_secret")`` reads ``settings.hmac_secret_env`` (a variable) or ``_file`` (a file)."""

    def secret(name: str) -> str | None:
        env = settings.get(f"{name}_env")
        if env and os.environ.get(env):
            return os.environ[env]
        path = settings.get(f"{name}_file")
        if path:
            return Path(path).read_text().strip()
        return None

    return secret


def make_context(endpoint: str, settings: dict, observe_http=lambda s: None) -> SinkContext:
    return SinkContext(endpoint=endpoint, settings=settings, observe_http=observe_http,
                       secret=secret_lookup(settings))
