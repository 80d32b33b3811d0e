"""The results pages: RESULTS.md (headline figures and pictures), REDUCED.md, FIGURES.md.

``CANONICAL`` names, for each headline figure, the one committed result file it comes from; a
newer run of that figure replaces the file (git history keeps the old one), so the page never
shows two rows for one figure. ``PICTURES`` names the pictures the benchmarks saved beside those
files. ``python -m benchmarks table`` writes the pages; no number on them is typed by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, git_commit, relativize
from benchmarks.harness import _all_seconds, _hardware_of, _table, committed_rows
from benchmarks.pictures import add_steps_chart

Cells = tuple[str, str, str, bool | None]  # genlab, anchor, target, met (None: no target)


def _add_student(d: dict) -> Cells:
    r = d["results"]
    s, t = r["student_1_step"], r["teacher_ddim_50"]
    return (f"{s['modes_covered']}/{s['modes']} modes, {s['high_quality_pct']:.1f}% HQ",
            f"its teacher, DDIM-50: {t['high_quality_pct']:.1f}% HQ",
            ">= 8/8 modes, >= 90% HQ", r["target_met"])


def _vae(d: dict) -> Cells:
    r = next(r for r in d["rows"] if r["model"] == "VAE (ELBO)")
    k = d["protocol"]["importance_samples"]
    return (f"{r['test_nll']:.1f} nats (k={k}, {r['test_examples']} test images)",
            "IWAE paper: 86.76", "<= 86.0 at the GPU preset's size", None)


def _vae_published(d: dict) -> Cells:
    r = d["rows"][0]
    k, images = d["protocol"]["importance_samples"], d["protocol"]["test_images"]
    minutes = f"{r['train_wall_s'] / 60:.0f} min wall, {r['train_cpu_s'] / 60:.0f} min CPU"
    anchor = "; ".join(f"{name} {nll:g}" for name, nll in r["anchors"].items())
    return (f"{r['test_nll']:.2f} nats (k={k:,}, {images:,} test images; trained {minutes})",
            # issue 22's 45-minute budget is part of the target
            anchor, f"<= {r['target']:g}",
            r["meets_target"] and r.get("train_within_budget", True))


def _ar(d: dict) -> Cells:
    loss, want = d["result"]["val_loss"], d["targets"]["val_loss"]
    return (f"{loss:.3f} ({d['result']['parameters'] / 1e6:.1f}M parameters)",
            "nanoGPT char, 10.7M parameters, GPU: 1.4697", f"<= {want}", loss <= want)


def _preset(d: dict) -> Cells:
    """An issue-22 MNIST CPU preset (``mnist_cpu.py``): FID, confident share and class range."""
    m, t = d["metrics"], d["targets"]
    minutes = f"{d['train_cpu_seconds'] / 60:.0f} CPU-min training"  # wall time: in the JSON
    if "modes_covered" in t:
        return (f"{m['modes_covered']:.0f}/1000 modes, KL {m['kl_to_uniform']:.3f} ({minutes})",
                "PacDCGAN2: 1000, KL 0.06; DCGAN: 99, KL 3.4",
                f">= {t['modes_covered']} modes, KL <= {t['kl_to_uniform']:g}", d["all_met"])
    low, high = t["class_share"]
    return (f"FID {m['fid']:.2f}, {100 * m['confident_share']:.1f}% confident, classes "
            f"{100 * m['class_share_min']:.1f}-{100 * m['class_share_max']:.1f}% ({minutes})",
            f"real train vs test FID: {next(iter(d['anchors'].values()))}" + (
                f"; real test: {100 * m['confident_share_real']:.1f}% confident"
                if "confident_share_real" in m else ""),
            f"FID <= {t['fid']:.2f}, >= {100 * t['confident_share']:g}% confident, classes "
            f"{100 * low:g}-{100 * high:g}%", d["all_met"])


def _selfcond(plain_name: str, plain_source: str) -> Callable[[dict], Cells]:
    """A self-conditioned preset, anchored on the plain unconditional one it replaces."""
    def cells(d: dict) -> Cells:
        genlab, _, target, met = _preset(d)
        m = _load(RESULTS, plain_source)["metrics"] if (RESULTS / plain_source).is_file() else None
        anchor = (f"plain {plain_name}: FID {m['fid']:.2f}, {100 * m['confident_share']:.1f}% "
                  "confident; " if m else "") + (
            f"real test: {100 * d['metrics']['confident_share_real']:.1f}% confident")
        return genlab, anchor, target, met
    return cells


def _overhead(model: str) -> Callable[[dict], Cells]:
    def cells(d: dict) -> Cells:
        r, want = d["models"][model], d["targets"]["ratio"]
        return (f"{r['ratio']:.3f} (loss difference {r['max_loss_diff']:g})", "plain PyTorch: 1",
                f">= {want}", r["ratio"] >= want)
    return cells


def _translation(d: dict) -> Cells:
    r = d["results"]
    return (f"{100 * r['recognised']:.1f}% recognised, L1 {r['l1']:.3f} ({r['num']} test pairs)",
            f"classifier on the edge maps themselves: {100 * r['classifier_on_sources']:.1f}%",
            f">= {100 * d['target']:g}%", d["met"])


def _super_resolution(d: dict) -> Cells:
    return (f"PSNR {d['psnr_diffusion_db']:.2f} dB ({d['digits']} test digits, DDIM-"
            f"{d['ddim_steps']}; {d['train_cpu_seconds'] / 60:.0f} CPU-min training)",
            f"bicubic upsampling: {d['psnr_bicubic_db']:.2f} dB", "above bicubic", d["met"])


def _text_to_image(d: dict) -> Cells:
    return (f"{100 * d['agreement_heldout']:.1f}% agree, FID {d['fid']:.1f} ({d['samples']} "
            f"samples, guidance {d['guidance']:g}; {d['train_cpu_seconds'] / 60:.0f} CPU-min "
            f"training)", "chance: 10%", f">= {100 * d['target']:g}%", d["met"])


@dataclass(frozen=True)
class Canonical:
    """One headline figure and the committed result file it is read from."""

    family: str
    figure: str
    source: str  # file name under benchmarks/results/
    cells: Callable[[dict], Cells]


def _vq(d: dict) -> Cells:
    vq = d["rows"][0]
    return (f"{100 * vq['codebook_usage']:.0f}% of {d['settings']['vq']['num_codes']} codes "
            f"used, {100 * vq['recon_accuracy']:.1f}% of reconstructions recognised "
            f"({vq['train_cpu_seconds'] / 60:.1f} CPU-min training)",
            f"real test images: {100 * vq['real_accuracy']:.1f}% recognised",
            ">= 95% of codes, >= 97% recognised",
            vq["codebook_usage"] >= 0.95 and vq["recon_accuracy"] >= 0.97)


def _twostage_cond(d: dict) -> Cells:
    prior = d["rows"][1]
    return (f"{100 * prior['label_agreement']:.1f}% agree, FID {prior['fid']:.1f} "
            f"({d['protocol']['samples']} samples, guidance {d['protocol']['guidance']:g}; "
            f"{prior['train_cpu_seconds'] / 60:.1f} CPU-min prior training)", "chance: 10%",
            ">= 90%", prior["label_agreement"] >= 0.9)


def _cd_student(d: dict) -> Cells:
    r = d["results"]
    grid = d["cd"]["model"]  # the teacher's solver chained over CD's grid: CD's ceiling
    cd, add = r["cd_1_step"], r["add_1_step"]
    ode = r[f"teacher_{grid['solver']}_{grid['num_intervals']}"]
    return (f"{cd['modes_covered']}/{cd['modes']} modes, {cd['high_quality_pct']:.1f}% HQ "
            f"({d['cd']['train_cpu_seconds'] / 60:.1f} CPU-min training)",
            f"ADD from the same teacher: {add['high_quality_pct']:.1f}%; the teacher's ODE on "
            f"CD's grid: {ode['high_quality_pct']:.1f}%", ">= 8/8 modes, >= 95% HQ",
            r["target_met"])


CANONICAL: tuple[Canonical, ...] = (
    Canonical("GAN", "Stacked MNIST CPU preset: modes covered of 1,000, KL to uniform (26,000 "
              "samples)", "preset_gan_stacked_mnist_cpu.json", _preset),
    Canonical("GAN", "MNIST CPU preset, no labels (200 clusters), temperature 0.8: FID, "
              "confident share, classes (10k samples)",
              "preset_gan_mnist_selfcond_cpu.json",
              _selfcond("DCGAN", "preset_gan_mnist_cpu.json")),
    Canonical("GAN", "MNIST class-conditional CPU preset, temperature 0.9: FID, confident share, "
              "classes "
              "(10k samples)", "preset_gan_mnist_cond_cpu.json", _preset),
    Canonical("VAE", "binarized MNIST test NLL, ELBO, CPU preset", "vae_nll_cpu_published_vae.json",
              _vae_published),
    Canonical("VAE", "binarized MNIST test NLL, IWAE k=50, CPU preset",
              "vae_nll_cpu_published_iwae.json", _vae_published),
    Canonical("autoregressive", "char Shakespeare val loss (nats/char)",
              "ar_shakespeare_cpu.json", _ar),
    Canonical("diffusion", "MNIST CPU preset, no labels (200 clusters), guidance 2: FID, "
              "confident share, classes (10k samples)",
              "preset_diffusion_mnist_selfcond_cpu.json",
              _selfcond("DDPM", "preset_diffusion_mnist_cpu.json")),
    Canonical("diffusion", "MNIST class-conditional CPU preset, guidance 1.3: FID, confident "
              "share, classes (10k samples)", "preset_diffusion_mnist_cond_cpu.json", _preset),
    Canonical("ADD", "ring-8 1-step student mode coverage", "add_points_1step_fresh.json",
              _add_student),
    Canonical("VAE-GAN", "MNIST CPU preset, no labels (200 clusters), temperature 0.8: "
              "FID, confident share, classes (10k samples)",
              "preset_vaegan_mnist_selfcond_cpu.json",
              _selfcond("VAE-GAN", "preset_vaegan_mnist_cpu.json")),
    Canonical("CD", "ring-8 1-step consistency student", "distill_compare.json", _cd_student),
    Canonical("VQ-GAN", "MNIST VQ-VAE: codebook used on the test set, reconstructions recognised",
              "twostage_mnist_cpu.json", _vq),
    Canonical("two-stage", "MNIST class-conditional prior on VQ latents: samples of the "
              "requested digit", "twostage_cond_mnist_cpu.json", _twostage_cond),
    Canonical("diffusion", "MNIST text-to-image: held-out prompts the classifier agrees with",
              "text_to_image_cpu.json", _text_to_image),
    Canonical("diffusion", "MNIST 14x14 -> 28x28 super-resolution PSNR",
              "super_resolution_cpu.json", _super_resolution),
    Canonical("pix2pix", "MNIST edges -> digits, translations recognised",
              "translation_mnist_cpu.json", _translation),
)


@dataclass(frozen=True)
class Picture:
    """A picture under benchmarks/results/img/ and what it shows (say when it is reduced)."""

    family: str
    file: str
    caption: str


PICTURES: tuple[Picture, ...] = (
    Picture("GAN", "gan_modes_ring8_ring8_samples.png",
            "GAN on ring-8: 2,500 samples of seed 0 (full size)."),
    Picture("GAN", "gan_modes_ring8_ring8_curves.png",
            "GAN on ring-8: discriminator and generator losses over training (seed 0)."),
    Picture("diffusion", "diffusion_points_ring8_ring8_samples.png",
            "Diffusion on ring-8: 2,500 DDPM-1000 samples (full size)."),
    Picture("diffusion", "diffusion_points_ring8_ring8_curves.png",
            "Diffusion on ring-8: training loss."),
    Picture("ADD", "add_points_1step_fresh_student_1_step.png",
            "ADD on ring-8: 2,500 one-step student samples of a reduced run: 8/8 modes, 59.8% "
            "HQ (the full run: 92.6%)."),
    Picture("ADD", "add_steps.png",
            "ADD on ring-8: sampling steps against high-quality share and samples/s, teacher "
            "and students (compare speeds within one result file)."),
    Picture("VAE", "vae_nll_cpu_published_vae_samples.png",
            "VAE (ELBO) on binarized MNIST, the CPU preset `configs/vae/mnist_mlp_cpu.yaml`: "
            "mean images of 64 prior samples."),
    Picture("VAE", "vae_nll_cpu_published_iwae_samples.png",
            "IWAE (k=50) on binarized MNIST, the CPU preset `configs/vae/mnist_iwae_cpu.yaml`: "
            "mean images of 64 prior samples."),
    Picture("GAN", "preset_gan_mnist_selfcond_cpu_samples.png",
            "GAN on MNIST without labels, `configs/gan/mnist_selfcond_cpu.yaml`: "
            "64 EMA samples, temperature 0.8."),
    Picture("GAN", "preset_gan_mnist_cond_cpu_samples.png",
            "Class-conditional GAN on MNIST, `configs/gan/mnist_cond_cpu.yaml`: "
            "64 EMA samples of random classes, temperature 0.9."),
    Picture("GAN", "preset_gan_stacked_mnist_cpu_samples.png",
            "GAN on Stacked MNIST (digits as R, G, B), `configs/gan/stacked_mnist_cpu.yaml` "
            "(44 CPU-min): 64 EMA samples; all 1,000 triples in 26,000."),
    Picture("CD", "distill_steps.png",
            "ADD and consistency distillation (CD) from one ring-8 teacher: sampling steps "
            "against high-quality share and samples/s; squares: the teacher's samplers."),
    Picture("CD", "distill_mnist_cpu_cd_1_step_samples.png",
            "CD on MNIST (`configs/cd/mnist_cpu.yaml`): 64 one-step samples; FID "
            "26.1 vs its teacher's DDIM-50 19.8 (1,000 samples)."),
    Picture("VQ-GAN", "twostage_mnist_cpu_reconstructions.png",
            "VQ-VAE on MNIST (`configs/vqgan/mnist_cpu.yaml`, 31 CPU-s): rows of "
            "test images, each above its reconstruction through the 7x7 codes."),
    Picture("two-stage", "twostage_mnist_cpu_samples.png",
            "GPT prior on those VQ codes: 64 samples after 400 batches (78 CPU-s); FID 102.6 "
            "on 10,000 samples."),
    Picture("two-stage", "twostage_cond_mnist_cpu_samples.png",
            "Class-conditional diffusion prior on the VQ-VAE's 7x7 latents "
            "(`configs/twostage/mnist_cond_cpu.yaml`): a row per digit, guidance 2."),
    Picture("two-stage", "latent_diffusion_mnist_cpu_samples.png",
            "Latent (top 4 rows, `configs/twostage/mnist_latent_cpu.yaml`) vs pixel diffusion "
            "at the same 3.7 CPU-min of training, DDIM-25: FID 65.9 vs 79.5 on 2,000, 10.8x "
            "faster to sample."),
    Picture("two-stage", "pixel_gpt_mnist_cpu_samples.png",
            "The same GPT on 784 binarized pixels for the code prior's 78 CPU-s of training: FID "
            "513.1 against 92.3 on 2,000; 87x slower to sample."),
    Picture("VAE-GAN", "preset_vaegan_mnist_selfcond_cpu_samples.png",
            "VAE-GAN on MNIST without labels, `configs/vaegan/mnist_selfcond_cpu.yaml`: "
            "64 EMA samples, temperature 0.8."),
    Picture("diffusion", "preset_diffusion_mnist_selfcond_cpu_samples.png",
            "Diffusion on MNIST without labels, `configs/diffusion/mnist_selfcond_cpu.yaml`: "
            "64 DDIM-25 samples, guidance 2."),
    Picture("diffusion", "preset_diffusion_mnist_cond_cpu_samples.png",
            "Class-conditional diffusion on MNIST, `configs/diffusion/mnist_cond_cpu.yaml` "
            "(40 CPU-min): 64 DDIM-25 samples, the digits in turn, guidance 1.3."),
    Picture("diffusion", "text_to_image_cpu_prompts.png",
            "Text-to-image diffusion on MNIST (`configs/diffusion/mnist_text_cpu.yaml`), one "
            "held-out phrasing per row, guidance 4, DDIM-20 (agreement in the table)."),
    Picture("diffusion", "super_resolution_cpu_strip.png",
            "Super-resolution 14x14 -> 28x28 diffusion on MNIST (`configs/diffusion/"
            "mnist_sr_cpu.yaml`), rows: source, bicubic, diffusion (DDIM-20), original."),
    Picture("ADD", "add_mnist_cpu_small_student_1_step_samples.png",
            "ADD on MNIST, 1-step student of a reduced run (`--cpu-small`: tiny networks, few "
            "steps: flat grey); the GPU preset has not run."),
    Picture("pix2pix", "translation_mnist_cpu_strip.png",
            "pix2pix on MNIST: test edge maps | translations | the digits they came from "
            "(configs/pix2pix/mnist_edges_cpu.yaml)."),
    Picture("diffusion", "inpaint_mnist_cpu_strip.png",
            "Inpainting with `configs/diffusion/mnist_cpu.yaml`: bottom half masked | inpainted "
            "(RePaint, 50 steps, reconstruction guidance 3) | original; 92.5% of 200 recognised "
            "(target 90%)."),
)

def _load(results: Path, name: str) -> dict:
    return json.loads((results / name).read_text())


def headline_rows(results: Path = RESULTS) -> list[dict[str, Any]]:
    """One row per canonical figure: family, figure, genlab, anchor, target, met, hardware."""
    rows = []
    for c in CANONICAL:
        if not (results / c.source).is_file():  # e.g. a results folder of a test or a fork
            continue
        d = _load(results, c.source)
        genlab, anchor, target, met = c.cells(d)
        rows.append({"family": c.family, "figure": c.figure, "genlab": genlab,
                     "anchor": anchor or "—", "target": target or "—",
                     "met": {True: "yes", False: "**no**", None: "—"}[met],
                     "hardware": _hardware_of(d), "source": c.source})
    return rows


def _html(text: str) -> str:
    """Markdown's inline code as HTML (Markdown is not rendered inside an HTML table)."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", text)


def _gallery(pictures: tuple[Picture, ...], per_row: int = 3) -> list[str]:
    """Pictures in rows of ``per_row``, each with its caption under it (an HTML table, which
    GitHub renders; Markdown images cannot be sized)."""
    lines = ["<table>"]
    for i in range(0, len(pictures), per_row):
        cells = [f'<td valign="top" width="{100 // per_row}%"><img src="img/{p.file}" '
                 f'alt="{p.family}" width="100%"><br><sub>{_html(p.caption)}</sub></td>'
                 for p in pictures[i:i + per_row]]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return lines + ["</table>", ""]


def _sample_text(results: Path) -> list[str]:
    if not (results / "ar_shakespeare_cpu.json").is_file():
        return []
    text = _load(results, "ar_shakespeare_cpu.json")["result"].get("sample", "")
    return ["```text", text.strip()[:400], "```"] if text else []


def build_results(results: Path = RESULTS) -> str:
    """RESULTS.md: headline table, pictures, then the commands behind each figure."""
    columns = ("family", "figure", "genlab", "anchor", "target", "met", "hardware")
    lines = ["# Benchmark results", "",
             "What genlab's model families achieve, one row per figure, each from the committed "
             "result file named in the appendix. CPU figures come from a 2-core CPU shared with "
             "other jobs; no GPU has run the GPU preset yet, so there are no GPU figures. "
             "Reduced-size and smoke runs: [REDUCED.md](REDUCED.md); every figure of the full "
             "runs: [FIGURES.md](FIGURES.md). Built by "
             "`python -m benchmarks table`.", ""]
    rows = headline_rows(results)
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c in columns) + " |"
              for r in rows]
    lines += ["", "HQ: share of samples within 3 standard deviations of a mode (the PacGAN / "
              "VEEGAN protocol, 2,500 samples).", "", "## Samples", ""]
    lines += _gallery(tuple(p for p in PICTURES if (results / "img" / p.file).is_file()))
    lines += ["Autoregressive (char-level GPT, the canonical run's sample):", ""]
    lines += _sample_text(results) + ["", "## Appendix: how each figure was measured", "",
                                      "| file | date | commit | command |", "|---|---|---|---|"]
    for source in dict.fromkeys(r["source"] for r in rows):
        d = _load(results, source)
        command = relativize(d.get("command") or (d.get("commands") or [None])[-1]
                             or "not recorded in the file")
        commit = d.get("commit") or git_commit(results / source) or "—"
        lines.append(f"| `{source}` | {str(d.get('date', ''))[:10]} | {commit} | "
                     f"`{command}` |")
    return "\n".join(lines) + "\n"


def _relative_rows(rows: list[dict]) -> list[dict]:
    return [{**r, "command": relativize(str(r.get("command") or ""))} for r in rows]


def build_reduced(results: Path = RESULTS) -> str:
    """REDUCED.md: the harness's reduced and smoke runs, and committed reduced-size files."""
    columns = ("family", "figure", "value", "target", "hardware", "date", "command")
    lines = ["# Reduced-size and smoke runs", "",
             "Runs shrunk to fit a CPU: they show that every benchmark runs end to end, not "
             "what a family achieves ([RESULTS.md](RESULTS.md) has that).", ""]
    for path in sorted(results.glob("summary_*.json")):
        s = json.loads(path.read_text())
        lines += [f"## `{relativize(s['command'])}`", "",
                  f"{str(s['date'])[:10]}, commit {s['commit']}; all families "
                  f"{_all_seconds(s) / 60:.1f} min.", ""]
        lines += _table(_relative_rows(s["rows"]), columns) + [""]
    reduced = [r for r in committed_rows(results) if r["reduced"]]
    lines += ["## Committed reduced-size runs", ""]
    lines += _table(_relative_rows(reduced), columns + ("source",)) + [""]
    return "\n".join(lines)


def build_figures(results: Path = RESULTS) -> str:
    """FIGURES.md: every figure of the committed full-size runs, one row each."""
    columns = ("family", "figure", "value", "target", "anchor", "hardware", "source")
    rows = [r for r in committed_rows(results) if not r["reduced"]]
    return "\n".join(["# Every figure of the full-size runs", "",
                      "The headline figures are in [RESULTS.md](RESULTS.md), with the "
                      "command behind each file.", ""] + _table(rows, columns)) + "\n"


def write_pages(results: Path = RESULTS) -> Path:
    """Write RESULTS.md, REDUCED.md, FIGURES.md and the ADD steps chart; returns RESULTS.md."""
    sources = [results / "add_points.json", results / "add_points_1step_fresh.json"]
    if all(s.is_file() for s in sources):
        add_steps_chart(sources, results / "img" / "add_steps.png")
    for name, build in (("REDUCED.md", build_reduced), ("FIGURES.md", build_figures),
                        ("RESULTS.md", build_results)):
        (results / name).write_text(build(results))
        print(f"-> {results / name}")
    return results / "RESULTS.md"
