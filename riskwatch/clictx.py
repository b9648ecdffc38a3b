"""What every CLI command shares: the settings, built once per invocation."""

from __future__ import annotations

from pathlib import Path

import click

from riskwatch.settings import Settings, load_settings


def settings_of(ctx: click.Context) -> Settings:
    """The settings of this invocation, loaded on first use (not at import)."""
    obj = ctx.find_root().ensure_object(dict)
    if "settings" not in obj:
        config: Path | None = obj.get("config")
        obj["settings"] = load_settings(config)
    settings: Settings = obj["settings"]
    return settings
