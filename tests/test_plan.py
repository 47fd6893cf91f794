"""Case selection syntax, the spec/config loader and the subject split."""

from __future__ import annotations

import math
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalflow.dataset.split import SPLITS, achieved_fractions, assign_splits
from vitalflow.errors import CaseSelectionError, SpecError
from vitalflow.run.cases import parse_case_selection
from vitalflow.run.inputs import find_case_files
from vitalflow.spec import load_config, load_spec
from vitalflow.spec.model import BUILTIN_DIR

# --- case selection -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("1-3,17,0022", [1, 2, 3, 17, 22]),
        ("0005", [5]),
        ("3,1-4,2", [1, 2, 3, 4]),
        (" 7 , 8-8 ", [7, 8]),
    ],
)
def test_case_selection(text, expected):
    assert list(parse_case_selection(text)) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("5-1", "runs backwards"),
        ("a-b", "'a-b' is not a case id"),
        ("1-", "'1-' is not a case id"),
        ("", "empty"),
        ("   ", "empty"),
        ("1,,2", "empty item"),
        ("-3", "'-3' is not a case id"),
    ],
)
def test_case_selection_errors(text, message):
    with pytest.raises(CaseSelectionError, match=message):
        parse_case_selection(text)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 500), min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_case_selection_round_trip(ids, rnd):
    items, ordered = [], sorted(ids)
    i = 0
    while i < len(ordered):  # write runs as ranges, singles zero padded at random
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        items.append(f"{ordered[i]}-{ordered[j]}" if j > i else f"{ordered[i]:0{rnd.randint(1, 5)}d}")
        i = j + 1
    rnd.shuffle(items)
    selection = parse_case_selection(",".join(items + items[:1]))
    assert list(selection) == ordered and len(selection) == len(ordered)
    assert all(i in selection for i in ordered) and not any(i in selection for i in range(-1, 502) if i not in ids)
    assert list(parse_case_selection(selection.text)) == ordered  # the canonical text round-trips
    present = set(rnd.sample(range(0, 501), 50))
    assert list(selection.without(present)) == [i for i in ordered if i not in present]
    assert selection.among(present) == sorted(present & ids)


def test_find_case_files_accepts_any_zero_padding(tmp_path):
    for name in ("0001.vital", "17.vital", "00022.vital", "notes.vital", "0003.txt"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(find_case_files(str(tmp_path))) == [1, 17, 22]


# --- spec and config ------------------------------------------------------------------------------
def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_builtin_spec_matches_spec_md_shape():
    spec = load_spec()
    assert len(spec.timeseries) == 16 and len(spec.static) == 6 and len(spec.targets) == 8
    assert spec.feature_names[:4] == ("HR", "BP_SYS", "BP_DIA", "BP_MAP")
    assert spec.targets == ("Propofol_INF", "Remifentanil_INF", "Noradrenalin_INF", "TV", "PEEP", "FIO2", "RR", "etSEV")


def test_spec_hash_changes_with_content_not_formatting(tmp_path):
    text = (BUILTIN_DIR / "master_poc.yaml").read_text()
    same = _write(tmp_path, "same.yaml", "# a comment\n" + text)
    changed = _write(tmp_path, "changed.yaml", text.replace("concentration: 20, per: minute}}\n    range: [0, 0.5]",
                                                            "concentration: 100, per: minute}}\n    range: [0, 0.5]"))
    assert load_spec(str(same)).content_hash() == load_spec().content_hash()
    assert load_spec(str(changed)).content_hash() != load_spec().content_hash()


@pytest.mark.parametrize(
    "edit, message",
    [
        (("name: master-poc", "name: master-poc\ncolour: blue"), "colour: unknown key"),
        (("range: [20, 200]", "range: [200, 20]"), "lo < hi"),
        (("  - name: BP_SYS", "  - name: HR"), "duplicate time-series feature name 'HR'"),
        (("targets: [Propofol_INF,", "targets: [Ketamine,"), "target 'Ketamine' is not a time-series feature"),
        (("{kind: scale, factor: 1.01972}", "{kind: scale, factor: 1.01972, divisor: 2}"), "exactly one of factor"),
    ],
)
def test_invalid_spec_names_file_and_field(tmp_path, edit, message):
    text = (BUILTIN_DIR / "master_poc.yaml").read_text()
    assert edit[0] in text
    path = _write(tmp_path, "bad.yaml", text.replace(edit[0], edit[1], 1))
    with pytest.raises(SpecError, match=message) as info:
        load_spec(str(path))
    assert str(path) in str(info.value)


def test_config_refers_to_spec_relative_to_itself(tmp_path):
    (tmp_path / "mine.yaml").write_text((BUILTIN_DIR / "master_poc.yaml").read_text().replace("\nversion: 2", "\nversion: 7"))
    cfg = _write(tmp_path, "run.yaml", """
        spec: mine.yaml
        windows: {length_s: 60, step_s: 10, horizon_s: 5}
        split: {train: 0.8, validation: 0.1, test: 0.1, seed: 3}
    """)
    config, spec = load_config(cfg)
    assert spec.version == 7 and config.windows.length_s == 60 and config.split.seed == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("windows: {length_s: 300, stride_s: 30}", "windows.stride_s: unknown key"),
        ("split: {train: 0.9, validation: 0.15, test: 0.15}", "add up to 1"),
        ("spec: nowhere.yaml", "spec file not found"),
        ("output: {compression: ZSTD}", "output.compression"),
        ("- a\n- b", "mapping at the top level"),
    ],
)
def test_invalid_config(tmp_path, text, message):
    with pytest.raises(SpecError, match=message):
        load_config(_write(tmp_path, "run.yaml", text))


# --- split ----------------------------------------------------------------------------------------
FRACTIONS = {"train": 0.7, "validation": 0.15, "test": 0.15}


@settings(max_examples=200, deadline=None)
@given(
    cases=st.dictionaries(st.integers(1, 5000), st.integers(1, 60).map(str), min_size=1, max_size=300),
    more=st.dictionaries(st.integers(5001, 9000), st.integers(1, 120).map(str), max_size=100),
    seed=st.integers(0, 2**31),
)
def test_split_is_subject_disjoint_deterministic_and_stable_as_cases_are_added(cases, more, seed):
    a = assign_splits(cases, FRACTIONS, seed)
    assert set(a) == set(cases)
    split_of_subject = {}
    for case, split in a.items():
        assert split_of_subject.setdefault(cases[case], split) == split  # never a subject twice
    assert a == assign_splits(dict(reversed(list(cases.items()))), FRACTIONS, seed)
    bigger = assign_splits({**cases, **more}, FRACTIONS, seed)  # adding cases never moves a patient
    assert all(bigger[c] == a[c] for c in cases)
    for c, s in more.items():
        if s in split_of_subject:
            assert bigger[c] == split_of_subject[s]


def test_split_fractions_converge_and_follow_the_hash_threshold():
    n = 20000
    a = assign_splits({i: f"subject-{i}" for i in range(n)}, FRACTIONS, 0)
    for s in SPLITS:  # binomial: 4 standard deviations at most
        share = sum(v == s for v in a.values()) / n
        assert abs(share - FRACTIONS[s]) < 4 * math.sqrt(FRACTIONS[s] * (1 - FRACTIONS[s]) / n)
    import hashlib

    for i in range(50):  # the rule by hand: u = first 8 bytes of sha256("seed:subject") / 2**64
        u = int.from_bytes(hashlib.sha256(f"0:subject-{i}".encode()).digest()[:8], "big") / 2**64
        assert a[i] == ("train" if u < 0.70 else "validation" if u < 0.85 else "test")


def test_achieved_fractions_by_hand():
    assert achieved_fractions({"a": "train", "b": "train", "c": "validation", "d": "train"}) == {
        "train": 0.75, "validation": 0.25, "test": 0.0}
    assert achieved_fractions({}) == {"train": 0.0, "validation": 0.0, "test": 0.0}
