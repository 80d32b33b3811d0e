"""RESULTS.md from the committed result files: short, one row per figure, no machine paths,
every picture present and small."""

import json
import re
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, relativize
from benchmarks.headline import (
    CANONICAL,
    PICTURES,
    build_figures,
    build_reduced,
    build_results,
    headline_rows,
)

MACHINE_PATH = re.compile(r"(/work/|/tmp/|/home/|/root/|/Users/|[A-Z]:\\)")


def _images(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text) + re.findall(r'<img src="([^"]+)"', text)


def test_headline_has_one_row_per_figure_and_at_most_16():
    rows = headline_rows()
    assert 0 < len(rows) <= 16
    keys = [(r["family"], r["figure"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert all(r["met"] in ("yes", "**no**", "—") for r in rows)
    assert all(r["hardware"] and r["hardware"] != "unknown" for r in rows)


def test_results_page_is_short_has_no_machine_paths_and_its_pictures_exist():
    text = build_results()
    assert not MACHINE_PATH.search(text), MACHINE_PATH.search(text)
    assert len(text) < 15_000
    images = _images(text)
    assert {f"img/{p.file}" for p in PICTURES} <= set(images)
    for image in images:
        path = RESULTS / image
        assert path.is_file(), image
        assert path.stat().st_size < 200_000, image
    for page in (build_reduced(), build_figures()):
        assert not MACHINE_PATH.search(page)


def test_every_family_has_a_picture_and_reduced_runs_stay_off_the_headline():
    families = {c.family for c in CANONICAL} - {"framework", "tooling", "autoregressive"}
    assert families <= {p.family for p in PICTURES}
    text = build_results()
    assert "ROMEO" in text  # the text model's sample
    for c in CANONICAL:
        d = json.loads((RESULTS / c.source).read_text())
        assert not d.get("reduced") and "small" not in c.source, c.source


def test_committed_pages_are_the_built_ones():
    # `python -m benchmarks table` was run after the last change of a result file
    assert (RESULTS / "RESULTS.md").read_text() == build_results()


def test_relativize_keeps_repository_paths_and_hides_others():
    command = (f"python -m x --out {ROOT}/benchmarks/results/a.json --teacher "
               f"/tmp/run7/teacher/last.ckpt --data /work/shared/data/mnist --n 2/3 "
               f"--log /elsewhere/genlab/runs/benchmarks/cpu/x.json")
    assert relativize(command) == ("python -m x --out benchmarks/results/a.json --teacher "
                                   "<teacher/last.ckpt> --data <data/mnist> --n 2/3 "
                                   "--log runs/benchmarks/cpu/x.json")
    assert relativize("see https://example.org/a/b") == "see https://example.org/a/b"


def test_pictures_are_committed_beside_the_results():
    assert Path(RESULTS / "img").is_dir()
    committed = {p.name for p in (RESULTS / "img").glob("*.png")}
    assert {p.file for p in PICTURES} <= committed


def test_readme_pictures_exist():
    readme = (ROOT / "README.md").read_text()
    images = [i for i in _images(readme) if i.startswith("benchmarks/results/img/")]
    assert len(images) >= 2
    assert all((ROOT / i).is_file() for i in images)


def test_pages_build_in_a_folder_without_the_canonical_files(tmp_path):
    from benchmarks.headline import write_pages

    write_pages(tmp_path)  # e.g. the harness run on a results folder of its own
    assert (tmp_path / "RESULTS.md").read_text().startswith("# Benchmark results")
    assert (tmp_path / "REDUCED.md").is_file() and (tmp_path / "FIGURES.md").is_file()


def test_result_files_are_written_without_machine_paths(tmp_path):
    from benchmarks.common import ROOT, write_result

    out = write_result({"command": f"python -m benchmarks.x --out {ROOT}/runs/b/x.json",
                        "nested": [{"teacher": "/tmp/mine/teacher/last.ckpt"}], "n": 3},
                       tmp_path / "r.json")
    text = out.read_text()
    assert str(ROOT) not in text and "/tmp/" not in text
    saved = json.loads(text)
    assert saved["command"] == "python -m benchmarks.x --out runs/b/x.json" and saved["n"] == 3
    assert saved["nested"][0]["teacher"] == "<teacher/last.ckpt>"


def test_committed_result_files_hold_no_machine_paths():
    from benchmarks.common import MACHINE_ROOTS, RESULTS

    for path in RESULTS.glob("*.json"):
        text = path.read_text()
        assert not any(root in text for root in MACHINE_ROOTS), path.name
