"""Fixtures of the experiment tests: the tiny experiment run once, in this process, shared by
the tests of the queue and of the submitit executor (which compares its table to this one)."""

from __future__ import annotations

import os

import pytest
from tiny_experiment import write_tiny

from diffstudio.app import run_job
from diffstudio.app.experiment import ExperimentRequest, run_experiment
from diffstudio.plugin_manager import load_plugins


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """The tiny experiment run once, uninterrupted, by the local executor: (file, folder,
    outcome, events)."""
    base = tmp_path_factory.mktemp("whole")
    os.environ["DIFFSTUDIO_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "cache")
    file = write_tiny(base)
    events = []
    outcome = run_job(event for event in run_experiment(
        ExperimentRequest(str(file), out=str(base / "out")), registry=load_plugins())
        if not events.append(event))
    return file, base / "out", outcome, events
