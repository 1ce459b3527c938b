"""Documentation is part of the product: the configuration reference names every setting."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from x3_shopify_dagster.settings import ConnectorSettings, StoreSettings, X3Settings

REPO = Path(__file__).resolve().parents[2]


def _env_names() -> list[str]:
    names = []
    for field, info in ConnectorSettings.model_fields.items():
        annotation = info.annotation
        if field == "stores":
            names += [f"X3SD_STORES__<KEY>__{name.upper()}" for name in StoreSettings.model_fields]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += [f"X3SD_{field.upper()}__{name.upper()}" for name in X3Settings.model_fields]
        else:
            names.append(f"X3SD_{field.upper()}")
    return names


def test_every_setting_is_documented():
    text = (REPO / "docs" / "configuration.md").read_text()
    missing = [name for name in _env_names() if f"`{name}`" not in text and f"{name}`" not in text]
    assert missing == []


def test_env_example_uses_only_known_settings():
    known = set(_env_names())
    for line in (REPO / ".env.example").read_text().splitlines():
        line = line.lstrip("# ").strip()
        if line.startswith("X3SD_") and "=" in line:
            name = line.split("=", 1)[0]
            generic = name.replace("__EU__", "__<KEY>__").replace("__US__", "__<KEY>__")
            # a map setting takes its keys as one more level, e.g. X3SD_STORES__EU__LOCATIONS__FR011
            assert generic in known or any(generic.startswith(f"{k}__") for k in known), name
