"""The input contract, fuzzed with a small budget (``python scripts/fuzz.py`` runs a larger one): generated
study TOML files, flag values and HellaSwag files either pass or are refused with one line, never a
traceback. End-to-end commands (hangs, files outside the study) are in the script and in
tests/test_bad_input.py."""


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import fuzz

BUDGET = settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@BUDGET
@given(raw=fuzz.STUDY_FILE)
def test_a_generated_study_file_is_accepted_or_refused_in_one_line(raw, tmp_path_factory):
    fuzz.check_study_file(raw, tmp_path_factory.mktemp("toml"))


@BUDGET
@given(flag=st.sampled_from(fuzz._experiment_flags()), value=fuzz.FLAG_VALUES)
def test_a_generated_flag_value_is_accepted_or_refused_in_one_line(flag, value):
    fuzz.check_flag(flag, value)


@BUDGET
@given(items=st.lists(fuzz.HELLASWAG_ITEM, max_size=3), junk=st.one_of(st.none(), st.binary(max_size=40)))
def test_a_generated_hellaswag_file_is_accepted_or_refused_in_one_line(items, junk, tmp_path_factory):
    fuzz.check_hellaswag(items, tmp_path_factory.mktemp("hs"), junk)


def test_the_generators_make_sound_inputs_too(tmp_path):
    """A fuzz that only ever generates refusals proves little: some of each kind must pass."""
    from hypothesis import find

    assert fuzz.check_study_file(find(fuzz.STUDY_FILE, lambda raw: fuzz.check_study_file(raw, tmp_path) == "ok"),
                                 tmp_path) == "ok"
    assert find(fuzz.HELLASWAG_ITEM, lambda i: fuzz.check_hellaswag([i], tmp_path) == "ok")


@pytest.fixture(scope="module")
def base_study(tmp_path_factory):
    return fuzz.base_study(tmp_path_factory.mktemp("base"))


@BUDGET
@given(ops=st.lists(fuzz.RECORD_OP, min_size=1, max_size=3))
def test_a_tampered_study_folder_is_analysed_or_refused_in_one_line_and_never_counts_what_it_should_not(
        ops, base_study, tmp_path_factory):
    fuzz.check_tampered(base_study, ops, tmp_path_factory.mktemp("t"))


@pytest.mark.parametrize("target", sorted(fuzz.FILE_INPUTS))
def test_a_special_file_wherever_the_tool_reads_one_is_one_line_never_a_hang(tmp_path, target):
    """A FIFO, a folder, /dev/null, a symlink to a FIFO, an empty file and binary junk, for every file the user
    names: refused (or, for an empty or junk file the format allows, handled) in one line, in a real process."""
    for i, kind in enumerate(fuzz.SPECIAL_FILES):
        f = fuzz.special_file(tmp_path / f"special_{i}", kind, fuzz.FILE_INPUTS[target])
        args = [a if a != "FILE" else str(f) for a in fuzz.FILE_INPUTS[target]]
        if target == "config":
            args += ["--output-dir", str(tmp_path / "out"), *fuzz.TINY]
        out = fuzz.run_cli([*args, "--cache-dir", str(tmp_path / "cache")] if target in ("config", "data") else args,
                           tmp_path, timeout=60)
        assert out["outcome"] in ("refused", "ok"), (kind, out)
        assert out["outcome"] == "refused" or kind in ("empty",), (kind, out)


@pytest.fixture(scope="module")
def names_work(tmp_path_factory):
    return tmp_path_factory.mktemp("names")  # one data cache for every example


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(target=st.sampled_from(fuzz.NAME_TARGETS), name=fuzz.NAME)
def test_a_generated_name_is_used_or_refused_in_one_line_and_nothing_is_written_outside_the_output_folder(
        target, name, names_work):
    """Names that become file names (``--name``, ``[study] name``, ``[[strategy]] name``): a study that is
    accepted trains one step; ``scripts/fuzz.py`` tries many more."""
    fuzz.check_name(target, name, names_work, 0)
