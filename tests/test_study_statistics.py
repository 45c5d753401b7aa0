"""The statistics behind a study's verdicts, each against a hand computation or a textbook example, and the study
plan (retuned learning rates, retried divergences, per-claim verdicts) on a scripted store: no training here."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest

from lit_mc.studies import ResultsStore, Study
from lit_mc.studies.stats import corrected_paired_t, equivalence_p, holm, mcnemar, minimum_detectable_effect
from lit_mc.studies.study import (
    Claim,
    Retune,
    StudyRun,
    adjust_study_set,
    build_report,
    compare_budgets,
    evaluate_claim,
    judge_claims,
)


def _t_sf_df2(t: float) -> float:
    """P(T > t) for Student's t with 2 degrees of freedom, in closed form: (1 - t / sqrt(t^2 + 2)) / 2."""
    return 0.5 * (1 - t / math.sqrt(t * t + 2))


def test_corrected_resampled_t_against_its_formula_by_hand() -> None:
    """3-fold CV, differences .03 .04 .02: mean .03, s^2 = (0 + .0001 + .0001) / 2 = .0001; Nadeau & Bengio's
    variance (1/3 + n_test/n_train) s^2 with n_test/n_train = 1/2 gives se = sqrt(5/6 * 1e-4); t = .03 / se."""
    result = corrected_paired_t([0.03, 0.04, 0.02], test_over_train=0.5)
    se = math.sqrt(5 / 6 * 1e-4)
    t = 0.03 / se  # 3.28634
    assert result["mean"] == pytest.approx(0.03) and result["se"] == pytest.approx(se) and result["df"] == 2
    assert result["t"] == pytest.approx(3.286335, rel=1e-6)
    assert result["p"] == pytest.approx(2 * _t_sf_df2(t), rel=1e-9)  # 0.081
    half = 4.302653 * se  # t_{0.975, 2} = 4.303 (any t table)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((0.03 - half, 0.03 + half), rel=1e-6)
    plain = corrected_paired_t([0.03, 0.04, 0.02], test_over_train=0.0)  # no correction: the ordinary paired test
    assert plain["p"] == pytest.approx(2 * _t_sf_df2(0.03 / math.sqrt(1e-4 / 3)), rel=1e-9)  # 0.035
    assert plain["p"] < 0.05 < result["p"]  # the correction is what keeps 3 overlapping folds from over-claiming


def test_corrected_t_edge_cases() -> None:
    assert math.isnan(corrected_paired_t([0.1], 0.5)["p"])  # one run: nothing to test
    same = corrected_paired_t([0.01, 0.01, 0.01], 0.5)
    assert same["p"] == 0.0 and same["ci_low"] == same["ci_high"] == pytest.approx(0.01)
    assert corrected_paired_t([0.0, 0.0], 0.5)["p"] == 1.0


def test_holm_against_the_textbook_example() -> None:
    """Four p-values .01 .04 .03 .005 (the worked example of Holm's procedure in most texts, e.g. Wikipedia's
    "Holm-Bonferroni method"): sorted .005 .01 .03 .04 times 4 3 2 1 = .02 .03 .06 .04, running max
    .02 .03 .06 .06; at alpha .05 only the first two are rejected."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9, 0.02]) == pytest.approx([1.0, 1.0, 0.06])  # capped at 1, never below a smaller one
    adjusted = holm([0.02, math.nan, 0.01])  # an untested claim neither counts nor is adjusted
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


def test_mcnemar_exact_test_by_hand() -> None:
    """1 image only the first classifier gets right, 9 only the second, 5 both: under equal accuracy the count
    favouring the first is binomial(10, 1/2), so p = 2 (C(10,0) + C(10,1)) / 2^10 = 22 / 1024. Images both get
    right or wrong do not move p; with no discordant image there is nothing to test."""
    a, b = [1] + [0] * 9 + [1] * 5, [0] + [1] * 9 + [1] * 5
    test = mcnemar(a, b)
    assert (test["only_a"], test["only_b"], test["n"]) == (1, 9, 15) and test["p"] == pytest.approx(22 / 1024)
    assert mcnemar(a + [0] * 50, b + [0] * 50)["p"] == pytest.approx(22 / 1024)
    assert mcnemar(b, a)["p"] == pytest.approx(test["p"]) and mcnemar(a, a)["p"] == 1.0
    with pytest.raises(ValueError, match="equally long"):
        mcnemar(a, b[:-1])


def test_minimum_detectable_effect() -> None:
    # large df: the normal approximation (z_.975 + z_.8) se = (1.95996 + 0.84162) se
    assert minimum_detectable_effect(0.01, 10_000) == pytest.approx(0.0280158, rel=1e-3)
    # df 2: t_{.975,2} = 4.30265, t_{.8,2} = 1.06066 (t tables): 5.3633 se
    assert minimum_detectable_effect(0.01, 2) == pytest.approx(0.053633, rel=1e-4)
    assert math.isnan(minimum_detectable_effect(0.01, 0))


def test_equivalence_by_two_one_sided_tests() -> None:
    # mean 0, se .002, df 2, margin .01: both one-sided t = 5, p = P(T_2 > 5)
    assert equivalence_p(0.0, 0.002, 2, 0.01) == pytest.approx(_t_sf_df2(5.0), rel=1e-9)
    # mean .008: the tight side has t = (.01 - .008) / .002 = 1
    assert equivalence_p(0.008, 0.002, 2, 0.01) == pytest.approx(_t_sf_df2(1.0), rel=1e-9)
    assert equivalence_p(0.02, 0.0, 2, 0.01) == 1.0 and equivalence_p(0.005, 0.0, 2, 0.01) == 0.0


# -- claims ----------------------------------------------------------------------------------------------------
def _row(value: dict, values: list[float]) -> dict:
    return {"setting": value, "label": json.dumps(value), "values": values, "train_images": 200, "val_images": 100}


ROWS = [
    _row({"w": 16}, [0.50, 0.51, 0.49]),
    _row({"w": 32}, [0.60, 0.62, 0.61]),  # +.10 .11 .12 over w16
    _row({"w": 64}, [0.50, 0.51, 0.52]),  # -.10 -.11 -.09 under w32
]
STUDY = Study("s", "h", "r", "b", {"w": [16, 32, 64]}, folds=3, reference_setting={"w": 16})


def test_claims_of_one_study_get_their_own_verdicts() -> None:
    """Three claims over the same rows: one holds, one is contradicted, one (an ordering) fails on its second
    link although its first link holds, so the study's verdicts disagree claim by claim."""
    claims = [
        evaluate_claim(STUDY, Claim("wider helps once", [{"w": 16}, {"w": 32}]), ROWS),
        evaluate_claim(STUDY, Claim("64 beats 32", [{"w": 32}, {"w": 64}]), ROWS),
        evaluate_claim(STUDY, Claim("accuracy rises with width", [{"w": 16}, {"w": 32}, {"w": 64}]), ROWS),
    ]
    judge_claims("val_acc", claims)
    assert [c["verdict"] for c in claims] == ["supported", "contradicted", "contradicted"]
    first, _, ordering = claims
    assert first["links"][0]["mean_difference"] == pytest.approx(0.11)
    assert ordering["p_value"] == pytest.approx(claims[1]["p_value"])  # the link that goes the other way decides
    assert [c["family_size"] for c in claims] == [3, 3, 3]
    assert all(c["p_holm"] >= c["p_value"] for c in claims)
    assert "+11.0 points" in first["verdict_text"] and "Holm-adjusted" in first["verdict_text"]


def test_an_ordering_claim_holds_only_when_every_link_does() -> None:
    rows = [ROWS[0], ROWS[1], _row({"w": 64}, [0.60, 0.63, 0.61])]  # w64 - w32 = 0 .01 0: no clear gain
    (claim,) = [evaluate_claim(STUDY, Claim("rises", [{"w": 16}, {"w": 32}, {"w": 64}]), rows)]
    judge_claims("val_acc", [claim])
    assert claim["holds_in_sign"] and claim["verdict"] == "inconclusive"
    assert claim["p_value"] == pytest.approx(max(link["p_value"] for link in claim["links"]))


def test_equal_claims_and_untested_single_runs() -> None:
    rows = [_row({"w": 16}, [0.50, 0.51, 0.49]), _row({"w": 32}, [0.501, 0.511, 0.489])]
    claim = evaluate_claim(STUDY, Claim("same", [{"w": 16}, {"w": 32}], "equal", 0.01), rows)
    judge_claims("val_acc", [claim])
    assert claim["verdict"] == "supported" and "equivalence within 1.0 points" in claim["verdict_text"]
    single = [_row({"w": 16}, [0.5]), _row({"w": 32}, [0.6])]
    claim = evaluate_claim(STUDY, Claim("one run", [{"w": 16}, {"w": 32}]), single)
    judge_claims("val_acc", [claim])
    assert claim["verdict"] == "untested" and "+10.0 points" in claim["verdict_text"]


def test_holm_across_the_study_set_and_budget_agreement() -> None:
    claims = [evaluate_claim(STUDY, Claim("wider", [{"w": 16}, {"w": 32}]), ROWS)]
    judge_claims("val_acc", claims)
    report = {"name": "s", "metric": "val_acc", "claims": claims, "comparisons": []}
    other = json.loads(json.dumps(report))
    other["claims"][0]["p_value"] = 0.001
    adjusted = adjust_study_set([report, other])
    p = claims[0]["p_value"]
    assert adjusted[0]["claims"][0]["p_holm"] == pytest.approx(holm([p, 0.001])[0])
    assert adjusted[0]["claims"][0]["family_size"] == 2 and adjusted[0]["claims"][0]["p_holm_study"] == p
    (agreement,) = compare_budgets(report, other)
    assert agreement["same_sign"] and agreement["agree"] == (agreement["verdict"] == agreement["verdict_second_budget"])


# -- the study plan: retuning and retries, on a scripted store ---------------------------------------------------
class ScriptedRun(StudyRun):
    """A StudyRun whose cell keys come from the setting itself (no config resolving), over a real store."""

    def key(self, setting: dict, fold: int) -> str:
        lr = setting.get("lr", setting.get("model.init_args.lr"))
        return f"{setting['w']}-{lr}-{fold}".replace(".", "_")


def _cell(run: ScriptedRun, setting: dict, fold: int, acc: float, diverged: bool = False) -> None:
    key = run.key(setting, fold)
    run.store.write(key, {"key": key, "fold": fold, "final": {"val_acc": acc}, "curves": [{"epoch": 0, "val_acc": acc}],
                          "wall_s": 1.0, "params": 10, "flops": 20, "epochs": 1, "train_images": 200,
                          "val_images": 100, "diverged": "loss nan" if diverged else None,
                          "diverged_step": 7 if diverged else None})  # fmt: skip


def test_retuned_learning_rate_is_chosen_on_its_fold_and_compared_on_all(tmp_path: Path) -> None:
    study = Study("s", "h", "r", "b", cases=[{"w": 16, "lr": 0.1}, {"w": 32, "lr": 0.1}], folds=2,
                  retune=Retune("lr", [0.5, 1, 2], 0))  # fmt: skip
    run = ScriptedRun(study, ResultsStore(tmp_path, tmp_path / "cells"))
    first = {task[1] for task, _ in run.pending()}
    assert [key for _, key in run.pending()] == ["16-0_05-0", "16-0_1-0", "16-0_2-0", "32-0_05-0", "32-0_1-0",
                                                 "32-0_2-0"] and first == {0}  # fmt: skip
    for lr, acc in ((0.05, 0.5), (0.1, 0.6), (0.2, 0.55)):
        _cell(run, {"w": 16, "lr": lr}, 0, acc)
        _cell(run, {"w": 32, "lr": lr}, 0, acc + (0.2 if lr == 0.2 else 0))
    assert [key for _, key in run.pending()] == ["16-0_1-1", "32-0_2-1"]  # the chosen rates' other folds
    _cell(run, {"w": 16, "lr": 0.1}, 1, 0.62)
    _cell(run, {"w": 32, "lr": 0.2}, 1, 0.77)
    assert run.pending() == []
    report = build_report(run)
    first, second = report["rows"]
    assert first["run_setting"] == {"w": 16, "lr": 0.1} and second["run_setting"] == {"w": 32, "lr": 0.2}
    assert second["retune"]["values"] == [0.05, 0.1, 0.2] and second["retune"]["chosen"] == 0.2
    assert second["values"] == [0.75, 0.77] and len(second["extra_cells"]) == 2  # the candidates not chosen
    assert second["wall_s"] == 4.0  # every cell it consulted counts as its compute


def test_a_cell_unlocked_by_retuning_runs_before_the_next_studys_cells(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The campaign asks the studies again after every stored cell: once a retuned study's candidates are in, its
    chosen rate's other folds come next (in study order), not after every cell of the first round."""
    from lit_mc.studies import study as study_module

    where: dict = {}

    class Recorded(ScriptedRun):
        def pending_labelled(self, waiting: bool = False, retests: bool = True) -> list:
            out = super().pending_labelled(waiting, retests)
            where.update({(id(cv), fold): (self, key) for (cv, fold), key, _ in out})
            return out

    trained = []

    def fake_cell(cv, fold, single_thread=False):  # noqa: ANN001, ANN202
        run, key = where[id(cv), fold]
        acc = {"0_05": 0.5, "0_1": 0.6, "0_2": 0.55}[key.split("-")[1]]
        run.store.write(key, {"key": key, "fold": fold, "final": {"val_acc": acc}, "wall_s": 1.0,
                              "curves": [{"epoch": 0, "val_acc": acc}]})  # fmt: skip
        trained.append(key)

    monkeypatch.setattr(study_module, "_run_cell", fake_cell)
    retuned = Study("a", "h", "r", "b", cases=[{"w": 16, "lr": 0.1}], folds=2, retune=Retune("lr", [0.5, 1, 2], 0))
    plain = Study("b", "h", "r", "b", cases=[{"w": 32, "lr": 0.1}], folds=2)
    runs = [Recorded(s, ResultsStore(tmp_path / s.name, tmp_path / "cells")) for s in (retuned, plain)]
    past = dt.datetime.now() - dt.timedelta(minutes=1)
    assert study_module.train_missing_cells(runs, stop_at=past) == 0 and trained == []  # --stop-at: none starts
    assert study_module.train_missing_cells(runs) == 6
    assert trained == ["16-0_05-0", "16-0_1-0", "16-0_2-0", "16-0_1-1", "32-0_1-0", "32-0_1-1"]


def test_cells_train_fold_by_fold_so_a_study_cut_short_has_every_setting() -> None:
    study = Study("s", "h", "r", "b", cases=[{"w": 16, "lr": 0.1}, {"w": 32, "lr": 0.1}], folds=2)
    run = ScriptedRun(study, ResultsStore(Path("unused"), Path("unused/cells")))
    assert [key for _, key in run.pending()] == ["16-0_1-0", "32-0_1-0", "16-0_1-1", "32-0_1-1"]


LR = "model.init_args.lr"


def test_a_diverged_setting_is_reported_and_retried_at_a_lower_rate(tmp_path: Path) -> None:
    study = Study("s", "h", "r", "b", cases=[{"w": 16, LR: 0.4}], folds=2, retry_diverged=0.5)
    run = ScriptedRun(study, ResultsStore(tmp_path, tmp_path / "cells"))
    _cell(run, {"w": 16, LR: 0.4}, 0, 0.1, diverged=True)
    _cell(run, {"w": 16, LR: 0.4}, 1, 0.5)
    assert [key for _, key in run.pending()] == ["16-0_2-0", "16-0_2-1"]
    _cell(run, {"w": 16, LR: 0.2}, 0, 0.6)
    _cell(run, {"w": 16, LR: 0.2}, 1, 0.61)
    (row,) = build_report(run)["rows"]
    assert row["run_setting"] == {"w": 16, LR: 0.2} and row["values"] == [0.6, 0.61]
    assert row["retries"][0]["folds"] == [0] and row["retries"][0]["retry"] == {"w": 16, LR: 0.2}
    unretried = ScriptedRun(Study("s", "h", "r", "b", cases=[{"w": 16, LR: 0.4}], folds=2), run.store)
    (row,) = build_report(unretried)["rows"]
    assert row["diverged"] == [{"fold": 0, "step": 7, "cause": "loss nan"}] and row["values"] == [0.1, 0.5]


def test_a_report_from_before_claims_keeps_its_verdict_in_the_set_adjustment() -> None:
    old = {"name": "old", "metric": "val_acc", "verdict": "supported (p=0.01)", "comparisons": []}
    (kept,) = adjust_study_set([old])
    assert kept["verdict"] == "supported (p=0.01)"
