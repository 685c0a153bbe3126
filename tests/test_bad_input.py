"""Bad input to the model, image, training and analysis commands: each case is refused by ``assert_refused``
(exit 2, one ``error:`` line, no traceback, no file changed); a few checks that the documented behaviours hold.

Every case runs in a fresh folder (``tmp_path``, also the working directory) holding small files made here;
``{w}`` in a case is that folder, ``{model}`` a tiny one-step SR model folder, ``{teacher}`` the micro teacher
(no trained weights), ``{recipes}`` the shipped recipes, ``{ro}`` a folder nothing can be written to.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image

from tocsr_nas.sr.adapt import adapt_unet
from tocsr_nas.sr.model import SRModel, save_sr_model
from tocsr_nas.vae import build_vae

from .badinput import assert_refused, run_cli
from .conftest import MICRO_TEACHER
from .test_sr import MICRO_VAE

RECIPES = Path(__file__).resolve().parents[1] / "experiments" / "recipes"



def _rgb(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def make_world(root: Path) -> None:
    """The small files the cases point at."""
    Image.fromarray(_rgb(16)).save(root / "rgb.png")
    Image.fromarray(np.concatenate([_rgb(16), np.full((16, 16, 1), 200, np.uint8)], axis=2)).save(root / "rgba.png")
    Image.fromarray(_rgb(1)).save(root / "one_pixel.png")
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "notes.txt").write_text("not an image\n")
    (root / "existing.png").write_bytes((root / "rgb.png").read_bytes())
    (root / "corrupt.json").write_text('{"format": "tocsr-cost-table", "rows": [1, 2\n')
    (root / "other.json").write_text('{"format": "something-else"}\n')
    (root / "table.json").write_text("{}\n")
    (root / "malformed.yaml").write_text("name: [unclosed\n")
    (root / "list.yaml").write_text("- just\n- a list\n")
    (root / "space_unknown_key.yaml").write_text(
        f"name: s\nteacher: {MICRO_TEACHER}\ncandidates: {{resnet: [teacher]}}\n"
        "stages: [{name: a, units: ['down_blocks.*']}]\ncolour: blue\n")
    (root / "vae_unknown_key.yaml").write_text((RECIPES / "train_vae.yaml").read_text() + "learning_rate: 0.1\n")
    (root / "onestep_unknown_key.yaml").write_text((RECIPES / "sr_onestep.yaml").read_text() + "epochs: 3\n")
    (root / "no_columns.csv").write_text("a,b\n1,2\n")
    (root / "words.csv").write_text("loss,gmacs\nlow,high\n")
    (root / "binary.csv").write_bytes(b"\x89PNG\x00\xff\xfe")
    for name in ("empty", "dir.png", "run"):
        (root / name).mkdir()
    for name, files in {"broken_only": ["a.png", "b.jpg"], "tiny_only": [], "pair": [], "done": []}.items():
        (root / name).mkdir()
        for file in files:
            (root / name / file).write_bytes(b"garbage")
    Image.fromarray(_rgb(8)).save(root / "tiny_only" / "small.png")
    Image.fromarray(_rgb(24)).save(root / "pair" / "a.png")
    Image.fromarray(_rgb(24, 1)).save(root / "pair" / "a.jpg")
    Image.fromarray(_rgb(16)).save(root / "done" / "rgb.png")
    for name in ("summary.md", "report.md", "compare.md"):
        (root / "done" / name).write_text("# earlier\n")
    (root / "run" / "result.json").write_text(json.dumps({"recipe": "teacher"}))


@pytest.fixture(scope="module")
def sr_model_dir(micro_teacher, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = adapt_unet(micro_teacher.unet, micro_teacher.context(1)[0].detach())
    model = SRModel(net=net.eval(), vae=build_vae(MICRO_VAE).eval(), scheduler=DDPMScheduler(), kind="sr-onestep",
                    scale=4, timestep=200)
    return save_sr_model(model, tmp_path_factory.mktemp("sr") / "onestep")


def _unwritable_folder(root: Path) -> Path | None:
    """A folder where creating a file fails (a read-only folder, or /sys when running as root), else None."""
    candidates = [root / "ro", Path("/sys")]
    candidates[0].mkdir()
    candidates[0].chmod(0o500)
    for folder in candidates:
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError:
            return folder
    return None


@pytest.fixture
def world(tmp_path, monkeypatch) -> Path:
    make_world(tmp_path)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    if (tmp_path / "ro").exists():
        (tmp_path / "ro").chmod(0o700)


def _argv(template: str, world: Path, **extra: str) -> list[str]:
    values = {"w": str(world), "teacher": str(MICRO_TEACHER), "recipes": str(RECIPES), **extra}
    return [part.format(**values) for part in template.split()]


UP = "upscale {w}/rgb.png -o {w}/out.png --model {w}/empty"
EV = "evaluate-sr --model {w}/empty --data {w}/pair --out {w}/eval"
VAE = "train vae --config {recipes}/train_vae.yaml --out {w}/vae"
ONE = "train-sr onestep --config {recipes}/sr_onestep.yaml --out {w}/one"

CASES = [
    # the top-level parser and usage errors
    ("no-command", "", "required: COMMAND"),
    ("unknown-command", "upscal", "invalid choice: 'upscal'"),
    ("unknown-global-flag", "--quiet units", "unrecognized arguments: --quiet"),
    ("unknown-flag", "units --teachr tiny-ldm", "unrecognized arguments: --teachr"),
    ("space-no-action", "space", "required: ACTION"),
    ("space-bad-action", "space shwo tiny_ldm", "invalid choice: 'shwo'"),
    ("space-show-no-name", "space show", "required: space"),
    ("space-show-extra-flag", "space show tiny_ldm --yaml", "unrecognized arguments: --yaml"),
    # units
    ("units-negative-latent", "units --teacher {teacher} --latent-size -8", "--latent-size: must be between 1 and 256"),
    ("units-zero-latent", "units --teacher {teacher} --latent-size 0", "--latent-size"),
    ("units-huge-latent", "units --teacher {teacher} --latent-size 1000000", "between 1 and 256"),
    ("units-float-latent", "units --teacher {teacher} --latent-size 2.5", "expected an integer"),
    ("units-unknown-teacher", "units --teacher tiny-ldn", "unknown teacher 'tiny-ldn'"),
    ("units-missing-teacher-folder", "units --teacher {w}/nothere", "not found"),
    ("units-malformed-teacher-yaml", "units --teacher {w}/malformed.yaml", "malformed YAML"),
    ("units-list-teacher-yaml", "units --teacher {w}/list.yaml", "mapping"),
    # space
    ("space-unknown-name", "space show tiny_ldn", "unknown search space 'tiny_ldn'"),
    ("space-malformed-yaml", "space show {w}/malformed.yaml", "malformed YAML"),
    ("space-unknown-key", "space show {w}/space_unknown_key.yaml", "colour: unknown key"),
    ("space-list-yaml", "space show {w}/list.yaml", "mapping"),
    # profile
    ("profile-negative-verify", "profile --verify -3", "--verify: must be between 0 and 1000"),
    ("profile-huge-verify", "profile --verify 5000", "--verify"),
    ("profile-word-verify", "profile --verify many", "expected an integer"),
    ("profile-negative-seed", "profile --seed -1 --verify 2", "--seed"),
    ("profile-corrupt-table-json", "profile --table {w}/corrupt.json", "malformed JSON"),
    ("profile-not-a-table", "profile --table {w}/other.json", "not a cost table"),
    ("profile-empty-table", "profile --table {w}/table.json", "not a cost table"),
    ("profile-missing-table", "profile --table {w}/nothere.json", "--table: file not found"),
    ("profile-folder-as-table", "profile --table {w}/empty", "is a folder"),
    ("profile-out-extension", "profile --out {w}/table.csv", "unsupported extension '.csv'"),
    ("profile-out-exists", "profile --out {w}/table.json", "--overwrite"),
    ("profile-out-parent-is-file", "profile --out {w}/notes.txt/table.json", "is a file, not a folder"),
    ("profile-out-unwritable", "profile --out {ro}/table.json", "not writable"),
    ("profile-malformed-arch", "profile --arch down.0", "malformed arch string"),
    ("profile-unknown-space", "profile --space tiny", "unknown search space"),
    # upscale: numbers
    ("upscale-zero-steps", UP + " --steps 0", "--steps: must be >= 1"),
    ("upscale-negative-steps", UP + " --steps -5", "--steps"),
    ("upscale-zero-tile", UP + " --tile 0", "--tile: must be >= 1"),
    ("upscale-negative-overlap", UP + " --overlap -1", "--overlap: must be >= 0"),
    ("upscale-overlap-over-default-tile", UP + " --overlap 600", "less than the tile"),
    ("upscale-overlap-equals-tile", UP + " --tile 64 --overlap 64", "--overlap"),
    ("upscale-zero-threads", UP + " --threads 0", "--threads: must be >= 1"),
    ("upscale-word-threads", UP + " --threads all", "expected an integer"),
    ("upscale-negative-seed", UP + " --seed -1", "--seed"),
    ("upscale-zero-scale", UP + " --scale 0", "--scale"),
    ("upscale-bad-color-fix", UP + " --color-fix magic", "invalid choice: 'magic'"),
    ("upscale-bad-output-mode", UP + " --output-mode raw", "invalid choice: 'raw'"),
    ("upscale-unknown-model-name", "upscale {w}/rgb.png -o {w}/out.png --model x9-nothere", "no SR model folder or shipped"),
    ("upscale-missing-output", "upscale {w}/rgb.png --model {w}/empty", "required: -o/--output"),
    # upscale: inputs
    ("upscale-missing-input", "upscale {w}/nothere.png -o {w}/out.png --model {w}/empty", "input not found"),
    ("upscale-text-input", "upscale {w}/notes.txt -o {w}/out.png --model {w}/empty", "cannot read image"),
    ("upscale-corrupt-input", "upscale {w}/broken.png -o {w}/out.png --model {w}/empty", "cannot read image"),
    ("upscale-one-pixel-input", "upscale {w}/one_pixel.png -o {w}/out.png --model {w}/empty", "smaller than 4 px"),
    ("upscale-folder-no-usable-image", "upscale {w}/broken_only -o {w}/out --model {w}/empty", "no usable image"),
    ("upscale-folder-no-image-files", "upscale {w}/empty -o {w}/out --model {w}/empty", "no image files"),
    ("upscale-folder-name-clash", "upscale {w}/pair -o {w}/out --model {w}/empty", "would both be written"),
    ("upscale-missing-model-folder", "upscale {w}/rgb.png -o {w}/out.png --model {w}/nothere", "--model"),
    ("upscale-not-a-model-folder", "upscale {w}/rgb.png -o {w}/out.png --model {w}/empty", "not an SR model folder"),
    ("upscale-model-is-a-file", "upscale {w}/rgb.png -o {w}/out.png --model {w}/notes.txt", "expected a folder"),
    # upscale: outputs
    ("upscale-output-bmp", "upscale {w}/rgb.png -o {w}/out.bmp --model {w}/empty", "unsupported extension '.bmp'"),
    ("upscale-output-no-extension", "upscale {w}/rgb.png -o {w}/out --model {w}/empty", "no file extension"),
    ("upscale-output-exists", "upscale {w}/rgb.png -o {w}/existing.png --model {w}/empty", "--overwrite"),
    ("upscale-output-is-folder", "upscale {w}/rgb.png -o {w}/dir.png --model {w}/empty", "is a folder"),
    ("upscale-output-parent-is-file", "upscale {w}/rgb.png -o {w}/notes.txt/out.png --model {w}/empty",
     "is a file, not a folder"),
    ("upscale-output-unwritable", "upscale {w}/rgb.png -o {ro}/out.png --model {w}/empty", "not writable"),
    ("upscale-alpha-to-jpeg", "upscale {w}/rgba.png -o {w}/out.jpg --model {w}/empty", "alpha channel"),
    ("upscale-output-replaces-input", "upscale {w}/rgb.png -o {w}/rgb.png --model {w}/empty --overwrite",
     "replace its input"),
    ("upscale-folder-output-is-file", "upscale {w}/pair -o {w}/notes.txt --model {w}/empty", "expected a folder"),
    ("upscale-folder-output-exists", "upscale {w}/done -o {w}/done --model {w}/empty", "--overwrite"),
    ("upscale-light-without-light-vae", "upscale {w}/rgb.png -o {w}/out.png --model {model} --light", "no light VAE"),
    ("upscale-scale-mismatch", "upscale {w}/rgb.png -o {w}/out.png --model {model} --scale 2", "does not match"),
    ("upscale-tile-below-stride", "upscale {w}/rgb.png -o {w}/out.png --model {model} --tile 4 --overlap 0",
     "smaller than the model's stride"),
    # sample
    ("sample-negative-eta", "sample --eta -1 -o {w}/g.png", "--eta: must be between 0.0 and 1.0"),
    ("sample-eta-above-one", "sample --eta 1.5 -o {w}/g.png", "--eta"),
    ("sample-nan-eta", "sample --eta nan -o {w}/g.png", "--eta"),
    ("sample-zero-count", "sample -n 0 -o {w}/g.png", "--count"),
    ("sample-negative-count", "sample -n -3 -o {w}/g.png", "--count"),
    ("sample-huge-count", "sample -n 100000 -o {w}/g.png", "between 1 and 1024"),
    ("sample-zero-steps", "sample --steps 0 -o {w}/g.png", "--steps"),
    ("sample-steps-beyond-schedule", "sample --steps 5000 -n 1 -o {w}/g.png", "trained with 1000 timesteps"),
    ("sample-output-exists", "sample -o {w}/existing.png", "--overwrite"),
    ("sample-default-output-exists", "sample -n 1", None),
    ("sample-output-gif", "sample -o {w}/grid.gif", "unsupported extension '.gif'"),
    ("sample-output-parent-is-file", "sample -o {w}/notes.txt/grid.png", "is a file, not a folder"),
    ("sample-output-unwritable", "sample -o {ro}/grid.png", "not writable"),
    ("sample-teacher-without-weights", "sample --teacher {teacher} -n 1 -o {w}/g.png", "no trained weights"),
    ("sample-unknown-teacher", "sample --teacher tiny-ldn -n 1 -o {w}/g.png", "unknown teacher"),
    # evaluate-sr
    ("eval-zero-scale", EV + " --scale 0", "--scale"),
    ("eval-zero-steps", EV + " --steps 0", "--steps"),
    ("eval-zero-tile", EV + " --tile 0", "--tile"),
    ("eval-zero-latency-size", EV + " --latency-size 0", "--latency-size"),
    ("eval-zero-latency-repeats", EV + " --latency-repeats 0", "--latency-repeats"),
    ("eval-zero-threads", EV + " --threads 0", "--threads"),
    ("eval-negative-compare-crops", EV + " --compare-crops -1", "--compare-crops"),
    ("eval-tiny-crop-size", EV + " --crop-size 8", "--crop-size"),
    ("eval-unknown-model-name", "evaluate-sr --model x9-nothere --data {w}/pair --out {w}/eval", "no SR model folder"),
    ("eval-missing-data", "evaluate-sr --model {w}/empty --out {w}/eval", "required: --data"),
    ("eval-missing-out", "evaluate-sr --model {w}/empty --data {w}/pair", "required: --out"),
    ("eval-data-not-found", "evaluate-sr --model {w}/empty --data {w}/nothere --out {w}/eval", "folder not found"),
    ("eval-data-is-file", "evaluate-sr --model {w}/empty --data {w}/notes.txt --out {w}/eval", "expected a folder"),
    ("eval-no-readable-image", "evaluate-sr --model {w}/empty --data {w}/broken_only --out {w}/eval",
     "no usable image"),
    ("eval-no-image-files", "evaluate-sr --model {w}/empty --data {w}/empty --out {w}/eval", "no image files"),
    ("eval-images-too-small", "evaluate-sr --model {w}/empty --data {w}/tiny_only --out {w}/eval", "smaller than"),
    ("eval-same-data-twice", EV + " --data {w}/pair", "two --data folders"),
    ("eval-out-is-file", "evaluate-sr --model {w}/empty --data {w}/pair --out {w}/notes.txt", "expected a folder"),
    ("eval-out-holds-results", "evaluate-sr --model {w}/empty --data {w}/pair --out {w}/done", "--overwrite"),
    ("eval-out-unwritable", "evaluate-sr --model {w}/empty --data {w}/pair --out {ro}/eval", "not writable"),
    ("eval-model-not-found", "evaluate-sr --model {w}/nothere --data {w}/pair --out {w}/eval", "folder not found"),
    ("eval-model-empty-name", "evaluate-sr --model ={w}/empty --data {w}/pair --out {w}/eval", "NAME=DIR"),
    ("eval-model-duplicate-name", EV + " --model empty={w}/run", "two models named 'empty'"),
    ("eval-not-a-model-folder", EV, "not an SR model folder"),
    ("eval-lpips-half", EV + " --lpips-backbone {w}/notes.txt", "needs both"),
    ("eval-lpips-missing-files", EV + " --lpips-backbone {w}/a.st --lpips-linear {w}/b.st", "file not found"),
    ("eval-scale-mismatch", "evaluate-sr --model {model} --data {w}/pair --out {w}/eval --scale 2", "model has scale 4"),
    # train / train-sr
    ("train-no-recipe", "train --config {recipes}/train_vae.yaml --out {w}/vae", "required: recipe"),
    ("train-unknown-recipe", "train unet --config {recipes}/train_vae.yaml --out {w}/vae", "invalid choice: 'unet'"),
    ("train-missing-config", "train vae --out {w}/vae", "required: --config"),
    ("train-config-not-found", "train vae --config {w}/nothere.yaml --out {w}/vae", "--config: file not found"),
    ("train-config-is-folder", "train vae --config {w}/empty --out {w}/vae", "is a folder"),
    ("train-malformed-config", "train vae --config {w}/malformed.yaml --out {w}/vae", "malformed YAML"),
    ("train-list-config", "train vae --config {w}/list.yaml --out {w}/vae", "mapping"),
    ("train-unknown-key", "train vae --config {w}/vae_unknown_key.yaml --out {w}/vae", "learning_rate: unknown key"),
    ("train-wrong-recipe-file", "train teacher --config {recipes}/train_vae.yaml --out {w}/t", "recipe"),
    ("train-out-is-file", VAE.replace("{w}/vae", "{w}/notes.txt"), "expected a folder"),
    ("train-out-parent-is-file", VAE.replace("{w}/vae", "{w}/notes.txt/vae"), "is a file, not a folder"),
    ("train-out-unwritable", VAE.replace("{w}/vae", "{ro}/vae"), "not writable"),
    ("train-out-other-recipe", VAE.replace("{w}/vae", "{w}/run"), "holds a 'teacher' run"),
    ("train-hr-dir-not-found", VAE + " --hr-dir {w}/nothere", "--hr-dir: folder not found"),
    ("train-hr-dir-empty", VAE + " --hr-dir {w}/empty", "no image files"),
    ("train-eval-dir-is-file", VAE + " --eval-dir {w}/notes.txt", "--eval-dir"),
    ("train-vae-folder-not-found", "train teacher --config {recipes}/train_teacher.yaml --out {w}/t --vae {w}/no",
     "--vae: folder not found"),
    ("train-sr-unknown-recipe", "train-sr distil --config {recipes}/sr_onestep.yaml --out {w}/one", "invalid choice"),
    ("train-sr-wrong-recipe-file", "train-sr adapt --config {recipes}/sr_onestep.yaml --out {w}/one", "sr-adapt"),
    ("train-sr-unknown-key", "train-sr onestep --config {w}/onestep_unknown_key.yaml --out {w}/one --init {w}/empty",
     "epochs: unknown key"),
    ("train-sr-init-not-found", ONE + " --init {w}/nothere", "--init: folder not found"),
    ("train-sr-init-not-a-model", ONE + " --init {w}/empty", "not an SR model folder"),
    ("train-sr-vae-is-file", "train-sr adapt --config {recipes}/sr_adapt.yaml --out {w}/a --vae {w}/notes.txt",
     "--vae"),
    ("train-sr-out-is-file", ONE.replace("{w}/one", "{w}/notes.txt") + " --init {w}/empty", "expected a folder"),
    # report
    ("report-run-not-found", "report {w}/nothere", "folder not found"),
    ("report-run-is-file", "report {w}/notes.txt", "expected a folder"),
    ("report-not-a-run", "report {w}/empty", "no stage output here"),
    ("report-out-is-file", "report {w}/empty --out {w}/notes.txt", "expected a folder"),
    ("report-out-holds-report", "report {w}/empty --out {w}/done", "--overwrite"),
    ("report-negative-eps", "report {w}/empty --eps -0.1", "--eps: must be >= 0.0"),
    ("report-word-eps", "report {w}/empty --eps tight", "--eps"),
    ("report-true-front-not-found", "report {w}/empty --true-front {w}/front.csv", "--true-front: file not found"),
    ("report-true-front-no-columns", "report {w}/empty --true-front {w}/no_columns.csv", "missing column"),
    ("report-true-front-words", "report {w}/empty --true-front {w}/words.csv", "not numbers"),
    ("report-true-front-binary", "report {w}/empty --true-front {w}/binary.csv", "CSV"),
    ("report-anchor-no-equals", "report {w}/empty --anchor slim", "NAME=ARCH"),
    ("report-anchor-bad-arch", "report {w}/empty --anchor slim=down.0", "bad arch in anchor 'slim'"),
    ("report-anchor-twice", "report {w}/empty --anchor a=down:R=T --anchor a=down:R=I", "given twice"),
    # compare
    ("compare-run-not-found", "compare {w}/nothere", "folder not found"),
    ("compare-no-search", "compare {w}/empty --out {w}/cmp", "no search folder"),
    ("compare-no-runs", "compare", "required: RUN"),
    ("compare-out-is-file", "compare {w}/empty --out {w}/notes.txt", "expected a folder"),
    ("compare-out-holds-comparison", "compare {w}/empty --out {w}/done", "--overwrite"),
    ("compare-negative-reference", "compare {w}/empty --reference -1 2", "--reference"),
    ("compare-one-reference-value", "compare {w}/empty --reference 1", "expected 2 arguments"),
    ("compare-infinite-reference", "compare {w}/empty --reference 1 inf", "must be a finite number"),
    ("compare-bad-band", "compare {w}/empty --band iqr", "invalid choice: 'iqr'"),
    ("compare-true-front-not-found", "compare {w}/empty --true-front {w}/front.csv", "file not found"),
]


@pytest.mark.parametrize(("template", "match"), [pytest.param(t, m, id=i) for i, t, m in CASES])
def test_refused(template, match, world, request, capsys):
    extra = {}
    if "{model}" in template:
        extra["model"] = str(request.getfixturevalue("sr_model_dir"))
    if "{ro}" in template:
        folder = _unwritable_folder(world)
        if folder is None:
            pytest.skip("no unwritable folder on this machine")
        extra["ro"] = str(folder)
    if request.node.callspec.id == "sample-default-output-exists":
        (world / "grid.png").write_bytes(b"an earlier grid")
    assert_refused(_argv(template, world, **extra), world, capsys, match=match)


def test_case_count_and_ids_are_distinct():
    assert len(CASES) >= 90
    assert len({c[0] for c in CASES}) == len(CASES) and len({c[1] for c in CASES}) == len(CASES)


# --- documented behaviours still work ------------------------------------------------------------------------------

def test_usage_errors_are_one_line_and_help_still_works(capsys):
    assert run_cli(["upscale", "--help"]) == 0
    assert "--overwrite" in capsys.readouterr().out
    assert run_cli(["units", "--latent-size", "-8"]) == 2
    assert capsys.readouterr().err == ("error: tocsr-nas units: argument --latent-size: must be between 1 and 256, "
                                       "got -8 (see --help)\n")


@pytest.mark.parametrize(("suffix", "fmt"), [(".jpg", "JPEG"), (".webp", "WEBP"), (".tif", "TIFF"), (".png", "PNG")])
def test_upscale_writes_the_extensions_format(sr_model_dir, world, suffix, fmt):
    out = world / f"out{suffix}"
    assert run_cli(["upscale", str(world / "rgb.png"), "-o", str(out), "--model", str(sr_model_dir)]) == 0
    with Image.open(out) as image:
        assert image.format == fmt and image.size == (64, 64)
    assert not [p for p in world.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_upscale_overwrite_replaces_and_keeps_alpha_in_webp(sr_model_dir, world):
    out = world / "existing.png"
    before = out.read_bytes()
    argv = ["upscale", str(world / "rgba.png"), "-o", str(out), "--model", str(sr_model_dir), "--overwrite"]
    assert run_cli(argv) == 0
    assert out.read_bytes() != before
    with Image.open(out) as image:
        assert image.mode == "RGBA" and image.size == (64, 64)
    argv[3] = str(world / "alpha.webp")
    assert run_cli(argv) == 0
    with Image.open(world / "alpha.webp") as image:
        assert image.mode == "RGBA"


def test_sixteen_bit_gray_becomes_eight_bit_jpeg(sr_model_dir, world):
    Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 257).save(world / "deep.png")
    assert run_cli(["upscale", str(world / "deep.png"), "-o", str(world / "deep.jpg"), "--model", str(sr_model_dir)]) == 0
    with Image.open(world / "deep.jpg") as image:
        assert image.mode == "L" and np.asarray(image).max() > 128  # scaled down, not clipped at 255 of 65535


def test_evaluate_sr_overwrite_replaces_only_its_tables(sr_model_dir, world):
    out = world / "done"
    argv = ["evaluate-sr", "--model", str(sr_model_dir), "--data", str(world / "pair"), "--out", str(out),
            "--no-latency", "--overwrite"]
    assert run_cli(argv) == 0
    assert "bicubic" in (out / "summary.md").read_text() and (out / "report.md").read_text() == "# earlier\n"


def test_sample_writes_jpeg_and_replaces_only_with_overwrite(world, capsys):
    out = world / "grid.jpg"
    argv = ["sample", "-n", "1", "--steps", "1", "-o", str(out)]
    assert run_cli(argv) == 0
    with Image.open(out) as image:
        assert image.format == "JPEG"
    first = out.read_bytes()
    assert_refused(argv, world, capsys, match="--overwrite")
    assert run_cli([*argv, "--seed", "1", "--overwrite"]) == 0
    assert out.read_bytes() != first
