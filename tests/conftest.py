"""Shared fixtures: a small synthetic corpus, made once per test session."""

from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CORPUS_CASES = 8


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """8 synthetic recordings (no waves, ~40 min each) and their clinical table. Do not modify."""
    from vitalflow.vital.synth import synth_corpus

    root = tmp_path_factory.mktemp("corpus")
    synth_corpus(root, CORPUS_CASES, seed=3, hours=0.7, waves=False)
    return root


@pytest.fixture
def corpus_copy(corpus, tmp_path):
    """A private copy of the corpus that a test may damage."""
    dest = tmp_path / "in"
    shutil.copytree(corpus, dest)
    return dest
