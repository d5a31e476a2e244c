"""The plan: every chapter has a recipe, FLOPs are counted as FlopCounterMode counts them, the
schedule on N GPUs is sound and the search-dependent trajectories are marked. That the plan at
smoke is exactly what the smoke book stores is checked on the test suite's smoke book
(``tests/test_notebooks.py``) and on the Ray equality test's store (``tests/test_scaleout.py``)."""

from bnlib import book, models, plan
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
