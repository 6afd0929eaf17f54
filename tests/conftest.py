import pytest
import torch


# Tests never touch the user's cache: every scorerl home is a temporary folder.
@pytest.fixture(autouse=True)
def _isolated_scorerl_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SCORERL_HOME", str(tmp_path_factory.mktemp("scorerl_home")))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine it stalls them
    (modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
