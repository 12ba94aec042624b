"""Shared fixtures. Real drill logs come from ../shared and are never copied here."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SETITEC_DIR = SHARED / "data" / "setitec"
MQTT_DIR = SHARED / "data" / "mqtt"


def shared_available() -> bool:
    return (SETITEC_DIR / "MANIFEST.csv").is_file()


requires_shared = pytest.mark.skipif(
    not shared_available(), reason="../shared/data is absent (fresh clone): real-log tests skipped"
)


@pytest.fixture
def setitec_dir() -> Path:
    if not shared_available():
        pytest.skip("../shared/data/setitec is absent")
    return SETITEC_DIR


@pytest.fixture
def mqtt_dir() -> Path:
    if not MQTT_DIR.is_dir():
        pytest.skip("../shared/data/mqtt is absent")
    return MQTT_DIR


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh appliance home in a temp dir."""
    h = tmp_path / "home"
    h.mkdir()
    return h
