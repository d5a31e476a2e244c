"""The plan: every chapter has a recipe, FLOPs are counted as FlopCounterMode counts them, the
schedule on N GPUs is sound, the search-dependent trajectories are marked, and (for the chapter
whose trajectories depend on results) the plan at smoke is what a smoke execution stores.
``tests/test_scaleout.py`` checks the plan against the executions of two more chapters."""

from bnlib import book, models, plan, runs
from bnlib.__main__ import main


def test_every_chapter_of_the_book_has_a_recipe():
    assert set(plan.RECIPES) == set(book.toc_chapters())


def test_flops_of_a_step_are_forward_and_backward():
    b, sizes = 128, (784, 100, 10)
    flops, launches = plan.step_cost(models.ModelSpec("mlp", sizes=sizes), (1, 28, 28), b, "float32")
    forward = 2 * b * (784 * 100 + 100 * 10)
    assert flops == 2 * forward + 2 * b * 100 * 10  # weight gradients of both layers, input gradient of the second
    assert launches > 2 * len(sizes)


def test_makespan_puts_the_longest_first():
    assert plan.makespan([3, 3, 2, 2, 2], 2) == 7  # LPT: 3+2+2 | 3+2 (the optimum, 6, is not its aim)
    assert plan.makespan([5, 1, 1], 4) == 5
    assert plan.makespan([1.0] * 8, 1) == 8


def test_paper_plan_marks_search_choices_and_costs_every_trajectory():
    planned = plan.plan("paper")
    rows = plan.rows(planned)
    assert all(r["gpu_h"] > 0 and r["gflop_step"] > 0 for r in rows)
    depends = [p for p in planned if p.depends]
    assert depends and all(p.chapters == ["hessian"] for p in depends)
    vgg16 = [r for r in rows if r["label"].startswith("vgg16/1 bn sgd lr=0.1 steps=15000")]
    assert vgg16 and 200 < vgg16[0]["gflop_step"] < 300  # VGG-16 on CIFAR-10, batch 128: ~0.63 GFLOP/image x 3


def test_cli_prints_the_table_and_totals(capsys):
    assert main(["plan", "--profile", "smoke", "--only", "training", "--gpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "GPU-hours on one H100-class GPU" in out and "on 2 GPUs through Ray" in out
    assert out.count("vgg11/0.125") == 4  # core and large-lr runs, no BN and BN, one seed each


# The hessian chapter's smoke settings, smaller still (the test's time): one epoch on 500 images, one width,
# few timing rounds, loose Lanczos.
SMALLER = {"train_size": 500, "val_size": 200, "search_size": 500, "train_eval_size": 200, "epochs": 1,
           "dense_epochs": 1, "widths": [10], "timing_rounds": 2, "timing_steps": 1, "block_probes": 1, "slq_steps": 4,
           "hessian_size": 50, "top_k": 2, "lanczos_tol": 0.1, "l2s": [0.0]}


def test_plan_is_what_the_hessian_chapter_stores(tmp_path, monkeypatch):
    """The chapter whose trajectories depend on a search: the same trajectories up to the chosen
    lr and l2 (where the plan marks them), the same probes at the same steps."""
    monkeypatch.setenv("BNLIB_RUNS", str(tmp_path / "_runs"))
    book.execute("hessian", profile="smoke", params=SMALLER, out=tmp_path / "hessian.ipynb", progress=False)
    planned = plan.plan("smoke", only=["hessian"], params={"hessian": SMALLER})
    assert any(p.depends for p in planned) and runs.listing(tmp_path / "_runs")
    differences = plan.differences(planned, tmp_path / "_runs")
    assert not any(differences.values()), differences
