"""One template formats and parses every file name of an output: names round-trip, and parsing
accepts only what formatting writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vitalflow.dataset.naming import NAMES, MergedName, PartName
from vitalflow.spec.model import SPLITS

splits = st.sampled_from(SPLITS)
compressions = st.sampled_from(["none", "GZIP"])
hosts = st.integers(0, 10_000).map(lambda i: f"h{i}")
seqs = st.integers(0, 10**7)
parts = st.builds(PartName, splits, seqs, hosts, compressions)


@given(parts)
def test_a_part_name_parses_back_to_its_fields(part):
    name = NAMES.part(part.split, part.seq, part.host, part.compression)
    assert NAMES.parse_part(name) == part
    assert NAMES.split_of(name) == part.split
    assert NAMES.parse_merged(name) is None and NAMES.parse_card(name) is None


@given(splits, compressions)
def test_a_merged_name_parses_back_to_its_fields(split, compression):
    name = NAMES.merged(split, compression)
    assert NAMES.parse_merged(name) == MergedName(split, compression)
    assert NAMES.parse_part(name) is None and NAMES.split_of(name) == split


@given(hosts, st.integers(2, 100))
def test_a_host_card_name_parses_back_to_its_host(host, host_count):
    assert NAMES.parse_card(NAMES.card(host, host_count)) == host
    assert NAMES.card(host, 1) == NAMES.card() == "preprocessing_metadata.json"
    assert NAMES.parse_card(NAMES.card()) == ""


@given(hosts, seqs)
def test_a_commit_record_name_parses_back(host, seq):
    assert NAMES.parse_commit(NAMES.commit(host, seq)) == (host, seq)


def _edits(name: str):
    """Names one edit away: a character deleted, replaced or inserted."""
    alphabet = st.sampled_from("0123456789-._habcdegilnorstvxz")
    index = st.integers(0, len(name) - 1)
    return st.one_of(
        index.map(lambda i: name[:i] + name[i + 1:]),
        st.tuples(index, alphabet).map(lambda p: name[:p[0]] + p[1] + name[p[0] + 1:]),
        st.tuples(st.integers(0, len(name)), alphabet).map(lambda p: name[:p[0]] + p[1] + name[p[0]:]),
    )


@given(st.data(), parts)
def test_parsing_accepts_only_names_formatting_writes(data, part):
    """A near miss of a part name is rejected, unless it is itself the name of another part
    (a digit changed): whatever parses formats back to exactly the same name."""
    name = NAMES.part(part.split, part.seq, part.host, part.compression)
    near = data.draw(_edits(name))
    parsed = NAMES.parse_part(near)
    if parsed is not None:
        assert NAMES.part(parsed.split, parsed.seq, parsed.host, parsed.compression) == near
    merged = NAMES.parse_merged(near)
    if merged is not None:
        assert NAMES.merged(merged.split, merged.compression) == near


@pytest.mark.parametrize("name", [
    "train-0003-h0.tfrecord",  # four digits
    "train-000003-h0.tfrecord",  # six with a leading zero: 00003 is the name of commit 3
    "train-00003-h01.tfrecord",  # host with a leading zero
    "train-00003-0.tfrecord",
    "Train-00003-h0.tfrecord",
    "valid-00003-h0.tfrecord",
    "train-00003-h0.tfrecord.gz.incomplete",
    "train-00003-h0.tfrecord.zst",
    "train-00003-h0.tfrecords",
    "_staging/h0/train-00003-h0.tfrecord",
    "train-00003-h0.tfrecord\n",
    " train-00003-h0.tfrecord",
])
def test_near_misses_are_not_parts(name):
    assert NAMES.parse_part(name) is None and NAMES.split_of(name) is None


def test_names_refuse_unknown_fields():
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        NAMES.part("dev", 0, "h0", "none")
    with pytest.raises(ValueError, match="unknown compression 'ZSTD'"):
        NAMES.merged("train", "ZSTD")


def test_the_part_glob_matches_the_parts_of_one_split():
    from fnmatch import fnmatch

    glob = NAMES.part_glob("train", "GZIP")
    assert fnmatch(NAMES.part("train", 12, "h3", "GZIP"), glob)
    assert not fnmatch(NAMES.part("test", 12, "h3", "GZIP"), glob)
    assert not fnmatch(NAMES.merged("train", "GZIP"), glob)
