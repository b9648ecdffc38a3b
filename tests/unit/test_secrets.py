import stat

import pytest
from pydantic import SecretStr

from riskwatch.secrets import SecretStore


def test_secret_is_generated_once_and_private(tmp_path):
    store = SecretStore(tmp_path / "secrets")
    first = store.get_or_create("mqtt-gw")
    assert len(first) >= 24
    assert store.get_or_create("mqtt-gw") == first
    assert SecretStore(tmp_path / "secrets").get_or_create("mqtt-gw") == first
    mode = stat.S_IMODE((tmp_path / "secrets" / "mqtt-gw").stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700


def test_configured_secret_wins_and_is_not_written(tmp_path):
    store = SecretStore(tmp_path / "s")
    assert store.get_or_create("token", SecretStr("from-settings")) == "from-settings"
    assert not (tmp_path / "s" / "token").exists()


def test_different_names_get_different_secrets(tmp_path):
    store = SecretStore(tmp_path)
    assert store.get_or_create("a") != store.get_or_create("b")


def test_names_cannot_escape_the_folder(tmp_path):
    for bad in ("../x", "", ".hidden"):
        with pytest.raises(ValueError, match="plain file name"):
            SecretStore(tmp_path).path(bad)
