"""Cost of the redaction layer on logging: one INFO record through a handler, with and without the record factory.

Typical connector messages (no secret in them, the common case) with N registered secrets (a few stores' tokens,
the X3 password and its Basic forms, rotated OAuth2 tokens), formatted by a plain handler writing to an in-memory
stream. Prints microseconds per record and writes bench/results/redaction.json.

    .venv/bin/python bench/bench_redaction.py
"""

from __future__ import annotations

import io
import json
import logging
import platform
import secrets
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from x3_shopify_dagster import redaction  # noqa: E402

RECORDS = 20_000
MESSAGES = (
    ("Posting %s %s: %s", ("eu", "2026-11-27", {"posted": 41, "failed": 2, "skipped": 1})),
    ("X3 %s %s failed (%s); attempt %d/%d, retrying in %.2fs", ("soap", "save", "busy", 1, 5, 0.42)),
    ("Staged %s: %s", ("us", {"new": 12, "changed": 3, "unchanged": 40, "older": 0})),
    ("refreshed the X3 access token (valid until %s)", ("2026-11-27T10:05:00+00:00",)),
)


def run(logger: logging.Logger) -> float:
    started = time.perf_counter()
    for index in range(RECORDS):
        message, args = MESSAGES[index % len(MESSAGES)]
        logger.info(message, *args)
    return (time.perf_counter() - started) / RECORDS * 1e6


def main() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("bench.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for _ in range(40):  # 40 known secrets
        redaction.register_secret(secrets.token_urlsafe(32))
    redaction.register_basic_credentials("WSCONNECT", secrets.token_urlsafe(16))

    plain = run(logger)
    redaction.install_log_redaction()
    redacted = run(logger)
    figures = {
        "records": RECORDS,
        "registered_secrets": len(redaction.REGISTRY),
        "us_per_record_plain": round(plain, 2),
        "us_per_record_redacted": round(redacted, 2),
        "overhead_us_per_record": round(redacted - plain, 2),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(figures, indent=2))
    out = REPO_ROOT / "bench" / "results" / "redaction.json"
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
