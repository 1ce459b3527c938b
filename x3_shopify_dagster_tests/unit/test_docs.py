"""Documentation is part of the product: every setting documented with its default, every link resolving."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo

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


def _fields() -> dict[str, FieldInfo]:
    """Each documented variable name → the settings field it sets."""
    fields: dict[str, FieldInfo] = {}
    for field, info in ConnectorSettings.model_fields.items():
        annotation = info.annotation
        if field == "stores":
            store_fields = StoreSettings.model_fields.items()
            fields.update({f"X3SD_STORES__<KEY>__{name.upper()}": sub for name, sub in store_fields})
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            x3_fields = X3Settings.model_fields.items()
            fields.update({f"X3SD_{field.upper()}__{name.upper()}": sub for name, sub in x3_fields})
        else:
            fields[f"X3SD_{field.upper()}"] = info
    return fields


def _rendered(default: object) -> str:
    """A default the way configuration.md writes it."""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    if isinstance(default, (list, dict)):
        return json.dumps(default)
    return str(default)


def test_documented_defaults_match_the_settings_model():
    """The Default column of configuration.md states each setting's real default (a literal or "empty")."""
    rows: dict[str, str] = {}
    for line in (REPO / "docs" / "configuration.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = re.findall(r"`(X3SD_[A-Z0-9_<>]+)`", cells[0]) if len(cells) >= 3 else []
        if len(names) == 1:  # rows naming several variables describe their defaults in words
            rows[names[0]] = cells[1]
    checked, wrong = 0, []
    for name, info in _fields().items():
        if name not in rows or info.is_required():
            continue
        default = info.get_default(call_default_factory=True)
        if default is None or isinstance(default, BaseModel):
            continue  # "—" or a description: nothing literal to compare
        cell = rows[name]
        literal = re.match(r"`([^`]*)`", cell)
        stated = "" if cell.startswith("empty") else (literal.group(1) if literal else None)
        checked += 1
        if stated != _rendered(default):
            wrong.append(f"{name}: documented {cell!r}, model default {_rendered(default)!r}")
    assert checked >= 30, checked  # the table parse itself must keep working
    assert wrong == []


_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def test_every_link_between_docs_resolves():
    """README and docs/ link to files that exist and to headings that exist (GitHub anchors)."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken, checked = [], 0
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
        for target in _LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # http(s):, mailto: ... are not checked offline
                continue
            checked += 1
            file_part, _, anchor = target.partition("#")
            resolved = (page.parent / file_part).resolve() if file_part else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{page.relative_to(REPO)}: {target} (no heading #{anchor})")
    assert checked > 20, checked
    assert broken == []
