"""Bad input to the run-folder commands (search, pareto, extract, distill-blocks, run): each is refused with exit 2,
one ``error:`` line, no traceback, and an unchanged file tree (:func:`tests.badinput.assert_refused`)."""
from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tocsr_nas.cli import main

from .badinput import assert_refused

GAUSSIAN = {"latents": {"source": "gaussian"}, "count": 2, "batch_size": 2}
DISTILL = "steps: 1\nbatch_size: 1\nheld_out_samples: 1\nlatents: {source: gaussian}\n"


@pytest.fixture(scope="module")
def made(micro_space_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A surrogate folder, a search over it, a compact UNet extracted from it and their configs (built once)."""
    root = tmp_path_factory.mktemp("made")
    recipe = root / "distill.yaml"
    recipe.write_text(f"space: {micro_space_path}\n{DISTILL}")
    assert main(["distill-blocks", "--config", str(recipe), "--out", str(root / "surrogates")]) == 0
    config = root / "search.yaml"
    config.write_text(json.dumps({"space": str(micro_space_path), "strategy": "random", "budget": 3, "eps": [10],
                                  "validation": GAUSSIAN, "surrogates": str(root / "surrogates")}))
    assert main(["search", "--config", str(config), "--out", str(root / "search"), "--quiet"]) == 0
    assert main(["extract", str(root / "search"), "--out", str(root / "compact")]) == 0
    return {"root": root, "surrogates": root / "surrogates", "search": root / "search", "compact": root / "compact",
            "config": config, "recipe": recipe}


@pytest.fixture
def work(made: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """Private copies of the made folders under ``tmp_path`` (the configs point at the copied surrogates)."""
    paths = {}
    for name in ("surrogates", "search", "compact"):
        shutil.copytree(made[name], tmp_path / name)
        paths[name] = tmp_path / name
    for name in ("config", "recipe"):
        text = made[name].read_text().replace(str(made["surrogates"]), str(tmp_path / "surrogates"))
        (tmp_path / made[name].name).write_text(text)
        paths[name] = tmp_path / made[name].name
    header, *lines = (tmp_path / "search" / "trials.jsonl").read_text().splitlines()
    data = json.loads(header)
    data["config"]["surrogates"] = str(tmp_path / "surrogates")
    (tmp_path / "search" / "trials.jsonl").write_text("\n".join([json.dumps(data, sort_keys=True), *lines]) + "\n")
    return paths


@contextlib.contextmanager
def held_by_other_process(folder: Path) -> Iterator[None]:
    """Another process holds ``folder``'s write lock meanwhile."""
    code = ("import sys, time; from tocsr_nas.locking import folder_lock; lock = folder_lock(sys.argv[1]).acquire(); "
            "print('ready', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield
    finally:
        holder.kill()
        holder.wait()


def edit_config(path: Path, **changes: object) -> Path:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


def edit_lines(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    path.write_text("".join(line + "\n" for line in edit(path.read_text().splitlines())))


def search_argv(work: dict[str, Path], out: Path | None = None, *flags: str) -> list[str]:
    return ["search", "--config", str(work["config"]), "--out", str(out or work["search"]), "--quiet", *flags]


# -- search: bad flags and configs, refused before anything is written ------------------------------------------
@pytest.mark.parametrize(("flags", "match"), [
    (["--strategy", "annealing"], "unknown strategy 'annealing'"),
    (["--budget", "0"], "budget"),
    (["--budget", "-5"], "budget"),
    (["--eps", "-0.1"], "eps"),
    (["--eps", "11"], "eps"),
    (["--eps", "nan"], "eps"),
    (["--batch-size", "0"], "batch_size"),
    (["--strategy", "bo", "--budget", "2"], "smaller than strategy 'bo' needs"),
    (["--space", "no_such_space"], "no_such_space"),
    (["--max-gmacs", "-1"], "max_gmacs"),
])
def test_search_bad_flags(work, tmp_path, capsys, flags, match):
    assert_refused(search_argv(work, tmp_path / "new", *flags), tmp_path, capsys, match=match)


@pytest.mark.parametrize(("changes", "match"), [
    ({"strategy_options": {"population": 3}}, "strategy 'random' options"),
    ({"strategy": "evolution", "strategy_options": {"population_size": "many"}}, "population_size"),
    ({"budgte": 3}, "budgte"),
    ({"surrogates": "/no/such/folder"}, "not a surrogate folder"),
])
def test_search_bad_config(work, tmp_path, capsys, changes, match):
    edit_config(work["config"], **changes)
    assert_refused(search_argv(work, tmp_path / "new"), tmp_path, capsys, match=match)


def test_search_surrogates_that_are_a_search_folder(work, tmp_path, capsys):
    edit_config(work["config"], surrogates=str(work["search"]))
    assert_refused(search_argv(work, tmp_path / "new"), tmp_path, capsys, match="not a surrogate folder")


def test_search_out_is_a_file(work, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert_refused(search_argv(work, tmp_path / "file"), tmp_path, capsys, match="not a folder")


def test_search_out_under_a_file(work, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert_refused(search_argv(work, tmp_path / "file" / "search"), tmp_path, capsys, match="cannot write here")


def test_search_out_is_another_kind_of_folder(work, tmp_path, capsys):
    assert_refused(search_argv(work, work["surrogates"]), tmp_path, capsys, match="not a search folder")


# -- search: resuming a folder that holds another search ---------------------------------------------------------
@pytest.mark.parametrize(("changes", "match"), [
    ({"seed": 1}, "seed changed (0 -> 1)"),
    ({"strategy": "evolution", "strategy_options": {"population_size": 2, "sample_size": 1}},
     "strategy changed (random -> evolution)"),
    ({"validation": {**GAUSSIAN, "count": 4}}, "config.validation.count changed (2 -> 4)"),
    ({"eval_budget": 1}, "config.eval_budget changed"),
    ({"surrogates": None}, "surrogates_hash changed"),
])
def test_search_resume_with_other_inputs(work, tmp_path, capsys, changes, match):
    edit_config(work["config"], **changes)
    assert_refused(search_argv(work), tmp_path, capsys, match=match)


def test_search_resume_with_retrained_surrogates(work, tmp_path, capsys):
    record = next((work["surrogates"] / "candidates").glob("*.json"))
    data = json.loads(record.read_text())
    data["weights_sha256"] = "0" * 64  # as if this candidate had been retrained
    record.write_text(json.dumps(data))
    assert_refused(search_argv(work), tmp_path, capsys, match="surrogates_hash changed")


# -- search / pareto: damaged trials logs and state ----------------------------------------------------------------
def corrupt_middle(lines: list[str]) -> list[str]:
    return [*lines[:2], lines[2][: len(lines[2]) // 2], *lines[3:]]


def gap_in_ids(lines: list[str]) -> list[str]:
    return [lines[0], *lines[2:]]


def bad_header(lines: list[str]) -> list[str]:
    return ["{not json", *lines[1:]]


@pytest.mark.parametrize(("damage", "match"), [
    (corrupt_middle, "line 3: corrupted trial record"),
    (gap_in_ids, "trial id 1 where 0 was expected"),
    (bad_header, "not a trials log"),
])
@pytest.mark.parametrize("command", ["search", "pareto", "extract"])
def test_damaged_trials_log(work, tmp_path, capsys, damage, match, command):
    edit_lines(work["search"] / "trials.jsonl", damage)
    argv = {"search": search_argv(work), "pareto": ["pareto", str(work["search"])],
            "extract": ["extract", str(work["search"]), "--out", str(tmp_path / "c2")]}[command]
    assert_refused(argv, tmp_path, capsys, match=match)


def test_search_state_counts_lost_trials(work, tmp_path, capsys):
    edit_lines(work["search"] / "trials.jsonl", lambda lines: lines[:-1])  # the log lost its last trial
    assert_refused(search_argv(work), tmp_path, capsys, match="strategy state counts 3 trials but trials.jsonl holds 2")


def test_search_unreadable_state(work, tmp_path, capsys):
    (work["search"] / "strategy_state.json").write_text("{")
    assert_refused(search_argv(work), tmp_path, capsys, match="unreadable strategy state")


def test_search_locked_folder(work, tmp_path, capsys):
    with held_by_other_process(work["search"]):
        assert_refused(search_argv(work), tmp_path, capsys, match="in use by pid")


def test_pareto_not_a_search_folder(work, tmp_path, capsys):
    assert_refused(["pareto", str(work["surrogates"])], tmp_path, capsys, match="not a search folder")


def test_pareto_missing_folder(tmp_path, capsys):
    assert_refused(["pareto", str(tmp_path / "nothing")], tmp_path, capsys, match="not a search folder")


def test_pareto_empty_log(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "trials.jsonl").write_text("")
    assert_refused(["pareto", str(tmp_path / "s")], tmp_path, capsys, match="empty or corrupted trials log")


# -- extract ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("target", "flags", "match"), [
    ("search", [], "exists: pass --overwrite"),
    ("search", ["--overwrite"], "not a compact-UNet folder"),
    ("surrogates", ["--overwrite"], "not a compact-UNet folder"),
    ("compact", [], "exists: pass --overwrite"),
])
def test_extract_never_replaces_what_it_did_not_make(work, tmp_path, capsys, target, flags, match):
    assert_refused(["extract", str(work["search"]), "--out", str(work[target]), *flags], tmp_path, capsys, match=match)


@pytest.mark.parametrize(("flags", "match"), [
    (["--pick", "down:R=nonsense"], "down"),
    (["--pick", "::"], "malformed arch string"),
    (["--eps", "-1"], "eps"),
    (["--eps", "1e-12"], "no trial reaches loss <= 1e-12"),
])
def test_extract_bad_pick(work, tmp_path, capsys, flags, match):
    assert_refused(["extract", str(work["search"]), "--out", str(tmp_path / "c2"), *flags], tmp_path, capsys,
                   match=match)


def test_extract_missing_search_folder(tmp_path, capsys):
    assert_refused(["extract", str(tmp_path / "none"), "--out", str(tmp_path / "c")], tmp_path, capsys,
                   match="not a search folder")


def test_extract_with_retrained_surrogates(work, tmp_path, capsys):
    record = next((work["surrogates"] / "candidates").glob("*.json"))
    data = json.loads(record.read_text())
    data["weights_sha256"] = "0" * 64
    record.write_text(json.dumps(data))
    assert_refused(["extract", str(work["search"]), "--out", str(tmp_path / "c2")], tmp_path, capsys,
                   match="surrogates changed since the search")


def test_extract_out_under_a_file(work, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert_refused(["extract", str(work["search"]), "--out", str(tmp_path / "file" / "c")], tmp_path, capsys,
                   match="parent is not a folder")


def test_extract_locked_out(work, tmp_path, capsys):
    with held_by_other_process(work["compact"]):
        assert_refused(["extract", str(work["search"]), "--out", str(work["compact"]), "--overwrite"], tmp_path,
                       capsys, match="in use by pid")


# -- distill-blocks ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("flags", "match"), [
    (["--steps", "0"], "steps"),
    (["--batch-size", "0"], "batch_size"),
    (["--space", "no_such_space"], "no_such_space"),
    (["--mode", "student-input"], "student"),
    (["--mode", "student-input", "--student-arch", "::"], "malformed arch string"),
    (["--mode", "student-input", "--student-arch", "down:R=I", "--student-surrogates", "/no/such"],
     "not a surrogate folder"),
])
def test_distill_bad_flags(work, tmp_path, capsys, flags, match):
    assert_refused(["distill-blocks", "--config", str(work["recipe"]), "--out", str(tmp_path / "new"), *flags],
                   tmp_path, capsys, match=match)


def test_distill_missing_image_folder(work, tmp_path, capsys):
    work["recipe"].write_text(work["recipe"].read_text().replace("{source: gaussian}", "{source: auto}"))
    assert_refused(["distill-blocks", "--config", str(work["recipe"]), "--out", str(tmp_path / "new"), "--hr-dir",
                    str(tmp_path / "none")], tmp_path, capsys, match="image folder not found")


def test_distill_image_folder_without_images(work, tmp_path, capsys):
    work["recipe"].write_text(work["recipe"].read_text().replace("{source: gaussian}", "{source: auto}"))
    (tmp_path / "empty").mkdir()
    assert_refused(["distill-blocks", "--config", str(work["recipe"]), "--out", str(tmp_path / "new"), "--hr-dir",
                    str(tmp_path / "empty")], tmp_path, capsys, match="no image files")


def test_distill_unknown_recipe_key(work, tmp_path, capsys):
    work["recipe"].write_text(work["recipe"].read_text() + "stepz: 3\n")
    assert_refused(["distill-blocks", "--config", str(work["recipe"]), "--out", str(tmp_path / "new")], tmp_path,
                   capsys, match="stepz")


def test_distill_missing_recipe(tmp_path, capsys):
    assert_refused(["distill-blocks", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "new")],
                   tmp_path, capsys)


@pytest.mark.parametrize(("target", "match"), [("search", "not a surrogate folder"), ("file", "not a folder")])
def test_distill_out_is_something_else(work, tmp_path, capsys, target, match):
    (tmp_path / "file").write_text("x")
    out = work["search"] if target == "search" else tmp_path / "file"
    assert_refused(["distill-blocks", "--config", str(work["recipe"]), "--out", str(out)], tmp_path, capsys,
                   match=match)


def test_distill_folder_of_another_space(work, tmp_path, capsys):
    from .conftest import write_space

    other = write_space(tmp_path, "name: other\nteacher: {teacher}\ncandidates: {resnet: [teacher, identity]}\n"
                                  "stages: [{name: down, units: ['down_blocks.*']}]\n", "other.yaml")
    assert_refused(["distill-blocks", "--config", str(work["recipe"]), "--space", str(other), "--out",
                    str(work["surrogates"])], tmp_path, capsys, match="trained for another")


def test_distill_locked_folder(work, tmp_path, capsys):
    with held_by_other_process(work["surrogates"]):
        assert_refused(["distill-blocks", "--config", str(work["recipe"]), "--out", str(work["surrogates"])],
                       tmp_path, capsys, match="in use by pid")


# -- run -----------------------------------------------------------------------------------------------------------
@pytest.fixture
def experiment(micro_space_path: Path, tmp_path: Path) -> Path:
    path = tmp_path / "micro.yaml"
    path.write_text(f"name: micro\nspace: {micro_space_path}\nstages: [search]\n"
                    f"search: {{strategy: random, budget: 2, validation: {json.dumps(GAUSSIAN)}}}\n")
    return path


@pytest.mark.parametrize(("extra", "match"), [
    (["search.budgte=3"], "unknown key 'search.budgte'"),
    (["search.budget=-1"], "budget"),
    (["stages=[search, polish]"], "unknown stage"),
    (["stages=[extract]"], "needs the output of stage 'search'"),
    (["sweep={seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]}"], "--yes"),
    (["search.strategy=annealing"], "annealing"),
])
def test_run_bad_overrides(experiment, tmp_path, capsys, extra, match):
    assert_refused(["run", str(experiment), "--runs-dir", str(tmp_path / "runs"), *extra], tmp_path, capsys,
                   match=match)


def test_run_missing_experiment(tmp_path, capsys):
    assert_refused(["run", str(tmp_path / "none.yaml"), "--runs-dir", str(tmp_path / "runs")], tmp_path, capsys)


def test_run_stage_folder_not_made_by_the_runner(experiment, tmp_path, capsys):
    (tmp_path / "runs" / "micro" / "search").mkdir(parents=True)
    (tmp_path / "runs" / "micro" / "search" / "notes.txt").write_text("mine")
    assert_refused(["run", str(experiment), "--runs-dir", str(tmp_path / "runs")], tmp_path, capsys,
                   match="not made by the experiment runner")


def test_run_locked_run_folder(experiment, tmp_path, capsys):
    with held_by_other_process(tmp_path / "runs" / "micro"):
        assert_refused(["run", str(experiment), "--runs-dir", str(tmp_path / "runs")], tmp_path, capsys,
                       match="in use by pid")
