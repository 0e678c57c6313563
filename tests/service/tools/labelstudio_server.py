"""The real Label Studio that test_labelstudio_app.py drives, started in the background from collection on.

Label Studio pins many packages of its own, so it lives in a virtual environment of its
own (``GDC_LABEL_STUDIO_VENV``, default ``.label-studio-venv`` in the repository),
installed from PyPI the first time. Preparing a fresh database (``label-studio init``:
migrations and the test user) takes minutes of one core, so it is done once into a blank
data folder kept beside the environment, and each run starts the server on a copy. Both
happen in a thread started when the session's tests are collected (``pytest_collection_finish``
in conftest.py), so they run beside the tests before the Label Studio ones instead of in
front of them.
"""
from __future__ import annotations

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

from apps.launch import stop
from tests.conftest import REPO, wait_for

LABEL_STUDIO_PACKAGE = "label-studio==1.23.2"
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
    """Label Studio on a port of its own, started by a thread; :meth:`wait` for it.

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
        self.error: BaseException | None = None  # what the thread raised: a failure or pytest's skip
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._start, name="label-studio startup", daemon=True)
        self._thread.start()

    def wait(self) -> str:
        """Block until Label Studio answers; its URL. Raises what the startup raised (a failure, or a skip)."""
        self._thread.join(INIT_SECONDS + START_SECONDS)
        assert not self._thread.is_alive(), "Label Studio's startup thread did not finish"
        if self.error is not None:
            raise self.error
        return self.url

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self.process is not None and self.process.poll() is None:
                stop(self.process)
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
        except BaseException as error:  # noqa: BLE001 (handed to the test that waits)
            self.error = error

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


# Here, not in conftest.py: pytest imports a conftest under another module name than the tests'
# ``from tests.service.tools.conftest import ...``, which would make a second key.
LABEL_STUDIO = pytest.StashKey[LabelStudioStartup]()


def label_studio_startup(config: pytest.Config) -> LabelStudioStartup:
    """The session's Label Studio startup, begun now unless it already was."""
    if LABEL_STUDIO not in config.stash:
        config.stash[LABEL_STUDIO] = LabelStudioStartup()
    return config.stash[LABEL_STUDIO]
