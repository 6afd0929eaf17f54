import os

import pytest

# Tests never touch the user's cache: every scorerl home is a temporary folder.
@pytest.fixture(autouse=True)
def _isolated_scorerl_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SCORERL_HOME", str(tmp_path_factory.mktemp("scorerl_home")))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    yield
