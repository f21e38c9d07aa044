"""Notebook 08's trade-off figure (lib.studies.defences_figures) on hand-made purification
tables: each defence is drawn as an arrow from the undefended model, and a model with no rate
(the untargeted rate of a student that gets no image right when clean) is left out and named
instead of breaking the drawing (matplotlib's arrow clipping raises on a NaN end)."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lib.studies.defences_figures import tradeoff_figure  # noqa: E402


def _row(subject, defence, metric, asr, acc, n_asr, n_acc=10):
    r = {"subject": subject, "defence": defence, "asr_metric": metric, "clean_acc": acc,
         "clean_acc_low": max(acc - 0.1, 0), "clean_acc_high": min(acc + 0.1, 1), "clean_acc_n": n_acc}
    for m in ("asr_bb", "untargeted_asr"):
        v = asr if m == metric else math.nan
        r |= {m: v, f"{m}_low": v - 0.05, f"{m}_high": v + 0.05, f"{m}_n": n_asr if m == metric else 0}
    return r


def _table(student_none_rate):
    return pd.DataFrame([
        _row("teacher", "none", "asr_bb", 0.95, 0.8, 40), _row("teacher", "fine_tune", "asr_bb", 0.2, 0.7, 40),
        _row("teacher", "control", "asr_bb", 0.05, 0.82, 40),
        _row("student, new task", "none", "untargeted_asr", student_none_rate,
             0.0 if math.isnan(student_none_rate) else 0.6, 0 if math.isnan(student_none_rate) else 6),
        _row("student, new task", "nad", "untargeted_asr", 0.3, 0.5, 5)])


def _arrows(ax):
    return [c for c in ax.get_children() if isinstance(c, matplotlib.text.Annotation)]


def test_each_defence_is_an_arrow_from_the_undefended_model():
    fig = tradeoff_figure(_table(0.7))
    fig.canvas.draw()
    teacher, student = fig.axes[:2]
    assert len(_arrows(teacher)) == 1 and len(_arrows(student)) == 1  # control gets no arrow
    assert "n=10 clean, 40 triggered" in teacher.get_title() and "no rate" not in student.get_title()
    plt.close(fig)


def test_a_model_with_no_rate_is_named_and_left_out_not_a_crash():
    fig = tradeoff_figure(_table(math.nan))
    fig.canvas.draw()  # the arrow from a NaN point raised StopIteration here
    teacher, student = fig.axes[:2]
    assert len(_arrows(teacher)) == 1 and _arrows(student) == []
    assert "n=10 clean, 0 triggered" in student.get_title() and "no rate: none" in student.get_title()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"none", "fine_tune", "control", "nad"} == set(labels)
    plt.close(fig)
