"""Daemon settings (defaults, TOML file, flags) and the key / nightly commands' edges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_api_support import REPO, free_port

from appliance.cli import main
from appliance.commands._common import cli_actor
from appliance.config import DaemonConfig, GateConfig, NightlyConfig, load_config
from appliance.errors import ValidationError
from appliance.store import Store


def test_defaults_without_a_file(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "home")
    assert cfg.home == (tmp_path / "home").resolve()
    assert (cfg.host, cfg.port, cfg.open_reads, cfg.source) == ("127.0.0.1", 8470, False, None)
    assert cfg.max_body_bytes == 20 * 1024 * 1024 and cfg.is_loopback
    assert cfg.nightly == NightlyConfig() and cfg.nightly.hour_minute == (2, 0)
    assert cfg.nightly.min_new_labels == 20 and cfg.nightly.auto_promote is True


def test_home_file_then_flags(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "appliance.toml").write_text(
        '[daemon]\nport = 9000\nopen_reads = true\n[nightly]\ntime = "03:30"\n'
        "auto_promote = false\n[gates]\nmin_exam = 5\n")
    cfg = load_config(home)
    assert cfg.port == 9000 and cfg.open_reads is True
    assert cfg.nightly.hour_minute == (3, 30) and cfg.nightly.auto_promote is False
    assert cfg.gates.min_exam == 5 and cfg.source == str(home / "appliance.toml")
    flagged = load_config(home, port=9100, open_reads=None)
    assert flagged.port == 9100 and flagged.open_reads is True  # None = flag not given


def test_config_path_home_is_relative_to_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "a.toml"
    conf.parent.mkdir()
    conf.write_text('[daemon]\nhome = "../data"\n')
    assert load_config(None, conf).home == (tmp_path / "data").resolve()
    assert load_config(tmp_path / "h", conf).home == (tmp_path / "h").resolve()


@pytest.mark.parametrize("text, problem", [
    ("[daemon]\nprot = 1\n", "unknown key [daemon].prot"),
    ("[deamon]\n", "unknown table"),
    ("[daemon]\nport = true\n", "[daemon].port = True has the wrong type"),
    ("[daemon]\nport = 70000\n", "port 70000"),
    ('[nightly]\ntime = "2am"\n', "nightly.time '2am'"),
    ('[nightly]\ntime = "24:00"\n', "nightly.time"),
    ("[nightly]\nfolds = 1\n", "nightly.folds 1"),
    ('[nightly]\narchitecture = "gpt"\n', "nightly.architecture 'gpt'"),
    ("[gates]\nlatency_factor = 0.5\n", "latency_factor >= 1"),
    ("[daemon\n", "not valid TOML"),
])
def test_bad_settings_name_the_file_and_key(tmp_path: Path, text: str, problem: str) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text(text)
    with pytest.raises(ValidationError) as err:
        load_config(tmp_path / "home", conf)
    assert str(conf) in str(err.value) and problem in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="config file not found"):
        load_config(tmp_path, tmp_path / "nope.toml")


def test_deploy_example_is_valid_and_documents_the_defaults() -> None:
    cfg = load_config(None, REPO / "deploy" / "appliance.toml")
    assert cfg.home == Path("/var/lib/appliance")
    defaults = DaemonConfig(home=cfg.home)
    assert (cfg.host, cfg.port, cfg.open_reads, cfg.max_body_mb) == (
        defaults.host, defaults.port, defaults.open_reads, defaults.max_body_mb)
    assert cfg.nightly == NightlyConfig() and cfg.gates == GateConfig()


def test_keys_create_list_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "home")
    assert main(["keys", "create", "tui-rig3", "--home", home, "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["name"] == "tui-rig3" and created["key"].startswith("apk_")
    assert main(["keys", "create", "tui-rig3", "--home", home]) == 4
    assert "exists already" in capsys.readouterr().err
    assert main(["keys", "create", "bad name!", "--home", home]) == 4
    assert main(["keys", "list", "--home", home, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["name"] for k in listed] == ["tui-rig3"] and "key" not in listed[0]
    assert listed[0]["role"] == "operator"  # the default: an operator at the TUI
    assert main(["keys", "create", "scada", "--role", "integration", "--home", home]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--home", home, "--json"]) == 0
    assert {k["name"]: k["role"] for k in json.loads(capsys.readouterr().out)}["scada"] \
        == "integration"
    with Store.open(Path(home)) as store:
        assert store.api_key_name(created["key"]) is None  # stored hashed, not as given
    assert main(["keys", "delete", "tui-rig3", "--home", home]) == 0
    assert main(["keys", "delete", "tui-rig3", "--home", home]) == 4
    with Store.open(Path(home)) as store:  # audited as POST/DELETE /keys audit, by cli:<user>
        audit = [(e.actor, e.action, e.subject) for e in reversed(store.audit_log())]
    me = cli_actor()
    assert audit == [(me, "key-create", "tui-rig3"), (me, "key-create", "scada"),
                     (me, "key-revoke", "tui-rig3")]


def test_nightly_command_without_daemon_or_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPLIANCE_KEY", raising=False)
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["nightly", "--url", url]) == 2
    assert "no API key" in capsys.readouterr().err
    assert main(["nightly", "--url", url, "--key", "apk_x"]) == 4
    assert "no daemon answers" in capsys.readouterr().err
