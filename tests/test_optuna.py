"""Optuna interop: a search mirrored into an Optuna journal, served live by optuna-dashboard over HTTP."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from tocsr_nas.cli import main
from tocsr_nas.search import read_trials

optuna = pytest.importorskip("optuna", reason="needs the extra 'optuna' (pip install tocsr-nas[optuna])")

GAUSSIAN = {"latents": {"source": "gaussian"}, "count": 4, "batch_size": 2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
        return response.read()


@pytest.fixture(scope="module")
def mirrored(micro_space_path, tmp_path_factory):
    """A 3-trial search mirrored to a journal, then resumed to 4 trials (the journal must not repeat any)."""
    root = tmp_path_factory.mktemp("journal")
    config = root / "search.yaml"
    config.write_text(json.dumps({"space": str(micro_space_path), "strategy": "random", "validation": GAUSSIAN,
                                  "max_gmacs": 1e9}))
    journal = root / "journal.log"
    args = ["search", "--config", str(config), "--out", str(root / "search"), "--quiet", "--optuna-journal",
            str(journal)]
    assert main([*args, "--budget", "3"]) == 0
    assert main([*args, "--budget", "4"]) == 0
    return root, journal


def test_journal_holds_every_trial_once(mirrored):
    root, journal = mirrored
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="search", storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = read_trials(root / "search")
    assert [t.user_attrs["trial_id"] for t in study.trials] == list(trials.trial_id)
    assert study.metric_names == ["loss", "gmacs"]
    for trial, (_, row) in zip(study.trials, trials.iterrows()):
        assert trial.user_attrs["arch"] == row.arch
        assert trial.values == pytest.approx([row.loss, row.gmacs])


def test_dashboard_serves_the_search_over_http(mirrored):
    _, journal = mirrored
    dashboard = shutil.which("optuna-dashboard")
    if dashboard is None:
        pytest.skip("needs optuna-dashboard (pip install tocsr-nas[optuna])")
    port = free_port()
    process = subprocess.Popen([dashboard, str(journal), "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                page = get(f"{base}/dashboard")
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.time() < deadline, "optuna-dashboard did not start within 60 s"
                time.sleep(0.3)
        assert b"<html" in page.lower()
        studies = json.loads(get(f"{base}/api/studies"))["study_summaries"]
        assert [s["study_name"] for s in studies] == ["search"]
        detail = json.loads(get(f"{base}/api/studies/{studies[0]['study_id']}"))
        assert len(detail["trials"]) == 4
        assert {p["name"] for p in detail["trials"][0]["params"]} == {"down:R", "down:A", "mid:R", "mid:A", "up:R",
                                                                      "up:A"}
    finally:
        process.terminate()
        process.wait(timeout=10)
