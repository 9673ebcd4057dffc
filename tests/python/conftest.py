"""Fixtures: the real llmux binary, started the way the README says (`llmux serve --demo`),
with a key made by `llmux keys create`."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def llmux_bin():
    return os.environ.get("LLMUX_BIN") or os.path.join(ROOT, "target", "debug", "llmux")


class Gateway:
    def __init__(self, base, key, data_dir, env):
        self.base = base
        self.key = key
        self.data_dir = data_dir
        self.env = env

    @property
    def api(self):
        return f"{self.base}/api/v1"

    def cli(self, *args):
        return subprocess.run([llmux_bin(), *args], env=self.env, capture_output=True, text=True, check=True)


@pytest.fixture(scope="session")
def gateway():
    data_dir = tempfile.mkdtemp(prefix="llmux-py-")
    env = dict(os.environ, LLMUX_DATA_DIR=data_dir, LLMUX_LOG="warn")
    env.pop("LLMUX_CONFIG", None)
    env.pop("LLMUX_DATABASE", None)
    proc = subprocess.Popen(
        [llmux_bin(), "serve", "--demo", "--listen", "127.0.0.1:0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(os.path.join(data_dir, "llmux.log"), "w"),
        text=True,
    )
    base = None
    for line in proc.stdout:
        m = re.match(r"llmux listening on (http://\S+)", line)
        if m:
            base = m.group(1)
            break
    if base is None:
        proc.kill()
        raise RuntimeError("llmux did not start: " + open(os.path.join(data_dir, "llmux.log")).read())
    # Keep draining stdout so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    out = subprocess.run(
        [llmux_bin(), "keys", "create", "--name", "python-sdk", "--credits", "5", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )
    key = json.loads(out.stdout)["key"]
    yield Gateway(base, key, data_dir, env)
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(data_dir, ignore_errors=True)
