"""The real Label Studio that test_labelstudio_app.py drives, started in the background from collection on.

Label Studio pins many packages of its own, so it lives in a virtual environment of its
own (``GDC_LABEL_STUDIO_VENV``, default ``.label-studio-venv`` in the repository),
installed from PyPI the first time. Preparing a fresh database (``label-studio init``:
migrations and the test user) takes minutes of one core, so it is done once into a blank
data folder kept beside the environment, and each run starts the server on a copy. Both
happen in a thread started as soon as the run's tests are known to include the Label Studio
ones, so they go on beside the tests before them instead of in front of them.

One Label Studio serves the run, whichever pytest-xdist worker runs its tests: the first
process (the controller, or the only process) starts it and stops it at the end, and
writes where it listens and how its start went to ``label-studio.json`` in the run's folder
(tests/run_folder.py), where the tests' fixtures read them. This module is loaded as a
plugin by tests/conftest.py: the controller loads no conftest below tests/.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import venv
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, stop_process, wait_for
from tests.run_folder import is_worker, run_folder

LABEL_STUDIO_PACKAGE = "label-studio==1.23.2"
LABEL_STUDIO_TESTS = "test_labelstudio_app.py"
USER, PASSWORD = "test@gdc.local", "gdc-test-password"
LABEL_STUDIO_TOKEN = "gdc-label-studio-test-token"  # a legacy token, enabled on the test's Label Studio
VENV = Path(os.environ.get("GDC_LABEL_STUDIO_VENV", REPO / ".label-studio-venv"))
INIT_SECONDS = 900  # a fresh database's migrations on a loaded 2-core machine
START_SECONDS = 240


def label_studio_python() -> Path:
    """The Python of Label Studio's own environment, installing it the first time; skips if it cannot."""
    python = VENV / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import label_studio"], capture_output=True).returncode == 0:
        return python
    venv.create(VENV, with_pip=True)
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", LABEL_STUDIO_PACKAGE], capture_output=True, text=True, timeout=1800
    )
    if install.returncode != 0:
        pytest.skip(f"{LABEL_STUDIO_PACKAGE} could not be installed into {VENV}: {install.stderr.strip()[-500:]}")
    return python


class LabelStudioStartup:
    """Label Studio on a port of its own, started by a thread; its state in ``label-studio.json``.

    The port is held (bound, not listening) from the start, so no other test's free port
    can take it while the database is prepared; it is let go just before Label Studio starts
    on it. The thread makes the blank data folder if it is missing, copies it to a temporary
    folder and starts Label Studio there. :meth:`stop` ends whichever process runs, and no
    other starts after it, wherever the thread is; then the copy is removed.
    """

    def __init__(self) -> None:
        self._port = socket.socket()
        self._port.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._port.getsockname()[1]}"
        self._data = tempfile.TemporaryDirectory(prefix="gdc-label-studio-", ignore_cleanup_errors=True)
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._stopped = False
        _write_state(url=self.url)
        self._thread = threading.Thread(target=self._start, name="label-studio startup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self.process is not None and self.process.poll() is None:
                stop_process(self.process)
        self._port.close()
        self._data.cleanup()

    def _start(self) -> None:
        try:
            python = label_studio_python()
            data = Path(self._data.name) / "data"
            shutil.copytree(self._blank_data(python), data)
            self._port.close()
            process = self._spawn(python, "start", data, "--no-browser", "--port", self.url.rsplit(":", 1)[1])

            def answers() -> bool:
                assert process.poll() is None, f"Label Studio exited while starting: {log_tail(data)}"
                try:
                    return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(answers, START_SECONDS, "Label Studio to start", every=0.5)
            _write_state(url=self.url, ready=True)
        except pytest.skip.Exception as skipped:
            _write_state(url=self.url, skip=str(skipped))
        except BaseException as error:  # noqa: BLE001 (handed to the tests that wait)
            _write_state(url=self.url, error=f"{type(error).__name__}: {error}")

    def _blank_data(self, python: Path) -> Path:
        """A data folder with the database migrated and the test user made, made once.

        Made under another name and renamed when complete, so an interrupted ``init`` is not
        taken for a finished one next time.
        """
        blank = VENV / "blank-data"
        if not blank.exists():
            partial = VENV / "blank-data.partial"
            shutil.rmtree(partial, ignore_errors=True)
            process = self._spawn(python, "init", partial)
            code = process.wait(INIT_SECONDS)
            assert code == 0, f"label-studio init exited with {code}: {log_tail(partial)}"
            partial.rename(blank)
        return blank

    def _spawn(self, python: Path, command: str, data_dir: Path, *arguments: str) -> subprocess.Popen:
        """``label-studio command`` on ``data_dir`` for the test user (legacy token on), unless stopped."""
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LATEST_VERSION_CHECK": "false",  # no call to PyPI at start-up
            # gdc listens on loopback here; Label Studio refuses local addresses for backends (and for the
            # /webhook it adds with each backend) unless told otherwise.
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
        }
        main = "import sys; from label_studio.server import main; sys.exit(main())"
        with self._lock, (data_dir / LOG).open("w") as log:
            assert not self._stopped, "the session ended before Label Studio started"
            self.process = subprocess.Popen(
                [python, "-c", main, command, "--data-dir", str(data_dir), "--username", USER, "--password", PASSWORD,
                 "--user-token", LABEL_STUDIO_TOKEN, "--enable-legacy-api-token", *arguments],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self.process


LOG = "gdc-test.log"  # Label Studio's output, in its data folder


def log_tail(data_dir: Path) -> str:
    return (data_dir / LOG).read_text(errors="replace")[-2000:]


def _state_file() -> Path:
    return run_folder() / "label-studio.json"


def _write_state(**state: object) -> None:
    partial = _state_file().with_suffix(".partial")
    partial.write_text(json.dumps(state))
    partial.replace(_state_file())  # whole or not at all for a reader in another process


def _read_state() -> dict | None:
    return json.loads(_state_file().read_text()) if _state_file().exists() else None


def label_studio_url() -> str | None:
    """Where this run's Label Studio listens (known before it is up); None when the run has no Label Studio tests."""
    state = _read_state()
    return None if state is None else state["url"]


def _start_ended() -> dict | None:
    state = _read_state()
    return state if state is not None and state.keys() != {"url"} else None


def wait_for_label_studio() -> str:
    """Block until this run's Label Studio answers; its URL. Skips or fails as its start did."""
    state = wait_for(_start_ended, INIT_SECONDS + START_SECONDS, "Label Studio's install, init and start", every=1)
    if "skip" in state:
        pytest.skip(state["skip"])
    assert "error" not in state, f"Label Studio did not start: {state['error']}"
    return state["url"]


_STARTUP = pytest.StashKey[LabelStudioStartup]()


def _start_for(config: pytest.Config, test_ids) -> None:
    if _STARTUP not in config.stash and any(LABEL_STUDIO_TESTS in test_id for test_id in test_ids):
        config.stash[_STARTUP] = LabelStudioStartup()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Without workers: start Label Studio now if its tests will run."""
    if not is_worker(session.config):
        _start_for(session.config, (item.nodeid for item in session.items))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids) -> None:
    """pytest-xdist's controller, once a worker has collected: start Label Studio now if its tests will run."""
    _start_for(node.config, ids)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _STARTUP in session.config.stash:
        session.config.stash[_STARTUP].stop()
