"""Shared fixtures. Real drill logs come from ../shared and are never copied here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mqtt_broker import Mosquitto, mosquitto_path

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


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A started Mosquitto on a free loopback port (tests/mqtt_broker.py), stopped after.

    Its config, persistence and log stay in tmp_path/mosquitto for a failed test's post-mortem.
    """
    if mosquitto_path() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto): MQTT tests skipped")
    broker = Mosquitto(workdir=tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.close()
