"""A finished study grows in place: ``--resume DIR`` with a config or flags that define a superset (more axis
values, more seeds) runs only the new experiments, leaves every old record byte-identical and analyses all; a
change that is not a superset is refused naming the field, and the folder is untouched."""

from __future__ import annotations

import hashlib
import json

from moe_ablate.cli import main

from .helpers import kill_resume


def toml(tmp_path, cache_dir, name, lrs, steps=4):
    path = tmp_path / name
    path.write_text(kill_resume.study_toml(steps, lrs, 0, str(cache_dir), name="small"))
    return str(path)


def snapshot(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def records(folder):
    return {p.name: p.read_bytes() for p in (folder / "experiments").glob("*.json")}


def finished_study(tmp_path, cache_dir, lrs="[0.01, 0.1]"):
    """A finished 2 LRs x 2 weight decays study (4 steps a run) in tmp_path/out/s."""
    out = tmp_path / "out"
    assert main(["run", "--config", toml(tmp_path, cache_dir, "a.toml", lrs), "--output-dir", str(out),
                 "--name", "s", "--no-progress"]) == 0
    return out / "s"


def study(folder):
    return json.loads((folder / "config.json").read_text())["study"]


def test_a_config_with_a_value_added_inside_the_range_runs_only_the_new_experiments(tmp_path, cache_dir, capsys):
    folder = finished_study(tmp_path, cache_dir)
    old = records(folder)
    old_specs = {e["id"]: e["overrides"] for e in study(folder)["experiments"]}
    # 0.03 goes between: a fresh enumeration renumbers exp_002.., so matching must be by settings, not by id
    assert main(["run", "--resume", str(folder), "--config", toml(tmp_path, cache_dir, "b.toml", "[0.01, 0.03, 0.1]"),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "growing the study by 2 experiment(s)" in err and "4 of 6 experiments already finished; running 2" in err
    now = records(folder)
    assert {k: now[k] for k in old} == old  # every old record byte-identical
    assert len(now) == 6
    specs = study(folder)["experiments"]
    assert {e["id"]: e["overrides"] for e in specs if e["id"] in old_specs} == old_specs
    assert len({e["config_id"] for e in specs}) == 6 and len({e["id"] for e in specs}) == 6
    for e in specs:  # each record ran what its spec says
        r = json.loads(now[f"{e['id']}.json"])
        assert r["config"]["train"]["muon_lr"] == e["overrides"]["train.muon_lr"]
    analysis = json.loads((folder / "analysis.json").read_text())
    assert analysis["n_experiments"] == 6 and analysis["n_configurations"] == 6
    assert sorted({c["muon_lr"] for c in analysis["configurations"]}) == [0.01, 0.03, 0.1]
    # resuming with the grown config again runs nothing
    assert main(["run", "--resume", str(folder), "--config", toml(tmp_path, cache_dir, "b.toml", "[0.01, 0.03, 0.1]"),
                 "--no-progress"]) == 0
    assert records(folder) == now


def test_more_seeds_add_repeats_of_the_same_configurations(tmp_path, cache_dir, capsys):
    out = tmp_path / "out"
    cfg = toml(tmp_path, cache_dir, "a.toml", "[0.01, 0.1]")
    assert main(["run", "--config", cfg, "--output-dir", str(out), "--name", "s", "--no-progress"]) == 0
    folder = out / "s"
    old = records(folder)
    assert main(["run", "--resume", str(folder), "--seeds", "2", "--no-progress"]) == 0
    now = records(folder)
    assert {k: now[k] for k in old} == old and len(now) == 8
    analysis = json.loads((folder / "analysis.json").read_text())
    assert analysis["n_configurations"] == 4 and all(c["n"] == 2 for c in analysis["configurations"])
    seeds = {json.loads(v)["config"]["train"]["seed"] for v in now.values()}
    assert seeds == {42, 43}


def test_a_change_that_is_not_a_superset_is_refused_naming_it_and_touches_nothing(tmp_path, cache_dir, capsys):
    folder = finished_study(tmp_path, cache_dir)
    before = snapshot(folder)
    capsys.readouterr()
    cases = [(toml(tmp_path, cache_dir, "steps.toml", "[0.01, 0.1, 0.3]", steps=6),
              "train.steps (4 in the study, 6 now)"),
             (toml(tmp_path, cache_dir, "fewer.toml", "[0.01]"), "is not in the new one")]
    for cfg, said in cases:
        assert main(["run", "--resume", str(folder), "--config", cfg, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1
        assert snapshot(folder) == before


def test_run_extend_walks_the_lr_axis_past_an_open_edge_keeping_the_grid_complete(tmp_path, cache_dir, capsys):
    """`run --extend` does on a grid's muon_lr axis what `lr-search --extend` does: while the best LR is at an edge,
    the next LR (x3) is added with every value of the other axes, until the optimum is bracketed or at the bound."""
    out = tmp_path / "out"
    cfg = toml(tmp_path, cache_dir, "e.toml", "[0.001, 0.003]", steps=8)  # far below this model's optimum
    assert main(["run", "--config", cfg, "--output-dir", str(out), "--name", "s", "--extend", "--no-progress"]) == 0
    recs = [json.loads(v) for v in records(out / "s").values()]
    lrs = sorted({r["config"]["train"]["muon_lr"] for r in recs})
    assert lrs[:3] == [0.001, 0.003, 0.009]  # each step x3 beyond the largest
    for lr in lrs:  # the grid stays complete: both weight decays at every LR
        assert sorted(r["config"]["train"]["weight_decay"] for r in recs if r["config"]["train"]["muon_lr"] == lr) \
            == [0.0, 0.1]
    rec = json.loads((out / "s" / "analysis.json").read_text())["recommendation"]
    best_lr = next(c["muon_lr"] for c in json.loads((out / "s" / "analysis.json").read_text())["configurations"]
                   if c["config_id"] == rec["best"])
    assert best_lr < lrs[-1] or lrs[-1] * 3 > 1  # it stopped: bracketed by estimate, or the next LR is past 1


def test_a_confirmed_study_that_grows_confirms_the_new_configurations_the_best_does_not_beat(tmp_path, cache_dir,
                                                                                             capsys):
    out = tmp_path / "out"
    first = tmp_path / "a.toml"
    first.write_text(kill_resume.study_toml(6, "[0.01, 0.05]", 2, str(cache_dir), name="small"))
    assert main(["run", "--config", str(first), "--output-dir", str(out), "--name", "s", "--no-progress"]) == 0
    folder = out / "s"
    round1 = [e for e in study(folder)["experiments"] if e["stage"] == "confirm"]
    assert round1  # noise unknown: the best (and any within 2% of it) got two more seeds
    seeds1 = sorted({e["overrides"]["train.seed"] for e in round1})
    more = tmp_path / "b.toml"
    more.write_text(kill_resume.study_toml(6, "[0.01, 0.05, 0.06]", 2, str(cache_dir), name="small"))
    old = records(folder)
    assert main(["run", "--resume", str(folder), "--config", str(more), "--no-progress"]) == 0
    assert {k: v for k, v in records(folder).items() if k in old} == old
    specs = study(folder)["experiments"]
    added = {e["config_id"] for e in specs[len(old):] if e["stage"] == "grid"}
    assert len(added) == 2  # 0.06 with both weight decays
    round2 = [e for e in specs[len(old):] if e["stage"] == "confirm"]
    assert round2  # here 0.06 is not beaten by the confirmed best: it gets the same two fresh seeds
    analysis = json.loads((folder / "analysis.json").read_text())
    worse = {c["config_id"] for c in analysis["recommendation"].get("outside_confirmation", [])
             if c["direction"] == "worse"}
    for c in added:  # each new configuration is confirmed now, or the confirmed best beats it
        assert c in {e["config_id"] for e in round2} or c in worse, c
    assert sorted({e["overrides"]["train.seed"] for e in round2}) in ([], seeds1)  # the same fresh seeds
    # a plain resume afterwards adds nothing
    n = len(records(folder))
    assert main(["run", "--resume", str(folder), "--no-progress"]) == 0
    assert len(records(folder)) == n
