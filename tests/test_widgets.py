"""The FedAvg widget lab, driven headless: no browser, no kernel, no display."""

from __future__ import annotations

import asyncio
import io
import json
import warnings
from pathlib import Path

import ipywidgets as W
import matplotlib
import numpy as np
import PIL.Image
import pytest
from matplotlib.text import Text

from course_lib import plots, widgets
from course_lib.widgets import FedAvgLab, fedavg_lab

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def centralised_calls(monkeypatch):
    """Count the baseline runs the lab starts."""
    calls = []
    real = widgets.run_centralised

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(widgets, "run_centralised", counting)
    return calls


@pytest.fixture()
def lab(centralised_calls):
    return fedavg_lab(num_clients=8, rounds=6, alpha=0.3)


def _curve(lab: FedAvgLab) -> np.ndarray:
    return np.asarray(lab.figure.axes[0].lines[0].get_ydata())


def test_builds_headless_and_runs_once(lab):
    assert isinstance(lab, FedAvgLab) and isinstance(lab.widget, W.VBox)
    assert set(lab.controls) == {"partition", "alpha", "num_clients", "rounds", "local_epochs",
                                 "fraction", "batch_size", "seed", "noise_multiplier",
                                 "max_norm", "secure_aggregation", "secagg_graph", "dropout"}
    assert lab.runs == 1 and bytes(lab.image.value).startswith(PNG)
    cfg = lab.history.config
    assert (cfg["num_clients"], cfg["rounds"], cfg["partition"], cfg["alpha"]) == \
        (8, 6, "dirichlet", 0.3)
    assert lab.progress.value == lab.progress.max == 6
    assert "final test accuracy" in lab.status.value
    assert set(lab.timings) == {"baseline", "train", "draw", "total", "train_cpu", "secagg"}
    assert cfg["dp"] is None and cfg["secure_aggregation"] is False and cfg["dropout"] == 0
    assert "&epsilon;" not in lab.status.value and "secure aggregation" not in lab.status.value


def test_sliders_report_on_release_only(lab):
    for name in ("num_clients", "rounds", "alpha", "local_epochs", "fraction",
                 "noise_multiplier", "max_norm", "dropout"):
        assert lab.controls[name].continuous_update is False
    assert lab.nodes_slider.continuous_update is False
    assert lab.controls["num_clients"].max == 1000 and lab.controls["rounds"].max == 200
    assert isinstance(lab.controls["alpha"], W.FloatLogSlider)


def test_moving_a_slider_reruns_and_redraws(lab):
    before, image_before = lab.history, bytes(lab.image.value)
    lab.controls["num_clients"].value = 20
    assert lab.runs == 2 and lab.history is not before
    assert lab.history.label_counts.shape == (20, 10)
    assert np.allclose(_curve(lab), [lab.history.initial_accuracy, *lab.history.test_accuracy])
    assert bytes(lab.image.value) != image_before
    heatmap = np.asarray(lab.figure.axes[1].images[0].get_array())
    assert np.array_equal(heatmap, lab.history.label_counts.T)
    lab.controls["rounds"].value = 9
    assert len(_curve(lab)) == 10 and lab.progress.value == 9


def test_iid_and_shards_disable_alpha(lab):
    lab.controls["partition"].value = "iid"
    assert lab.controls["alpha"].disabled
    assert lab.history.config["partition"] == "iid" and lab.history.config["alpha"] is None
    lab.controls["partition"].value = "shards"
    assert lab.history.config["partition"] == "shards"
    assert (lab.history.label_counts > 0).sum(axis=1).max() <= 4  # two shards, <= 2 labels each
    lab.controls["partition"].value = "dirichlet"
    assert not lab.controls["alpha"].disabled and lab.history.config["alpha"] == 0.3


def test_baseline_is_cached_per_seed(lab, centralised_calls):
    assert len(centralised_calls) == 1
    first = lab.baseline
    lab.update(num_clients=3, local_epochs=2, fraction=0.5)
    lab.update(rounds=4)
    assert lab.baseline is first and len(centralised_calls) == 1  # fewer rounds: a prefix
    lab.update(rounds=7)  # more rounds than cached: grown (at least doubled) once
    assert len(centralised_calls) == 2 and len(lab.baseline.test_accuracy) == 12
    assert lab.baseline.test_accuracy[:6] == first.test_accuracy
    lab.update(rounds=12)
    assert len(centralised_calls) == 2
    lab.update(seed=1)
    assert len(centralised_calls) == 3 and lab.history.config["seed"] == 1
    lab.update(seed=0)
    assert len(centralised_calls) == 3


def test_update_sets_several_controls_and_runs_once(lab):
    history = lab.update(num_clients=5, rounds=3, partition="iid", batch_size=10)
    assert lab.runs == 2 and history is lab.history
    assert history.config["batch_size"] == 10 and len(history.test_accuracy) == 3
    with pytest.raises(ValueError, match="unknown control"):
        lab.update(nodes=5)


def test_impossible_settings_explain_themselves_and_keep_the_last_plot(lab):
    before, image = lab.history, bytes(lab.image.value)
    assert lab.update(partition="shards", num_clients=1000) is None
    assert "Cannot run" in lab.status.value and "shards_per_client" in lab.status.value
    assert lab.history is before and bytes(lab.image.value) == image
    assert lab.update(num_clients=100) is not None  # a fix runs again


def test_changes_close_in_time_are_merged_in_a_kernel(lab):
    lab.debounce = 0.05

    async def move_three_sliders():
        lab.controls["num_clients"].value = 11
        lab.controls["rounds"].value = 4
        lab.controls["local_epochs"].value = 2
        assert lab.runs == 1  # nothing ran yet: waiting for more changes
        await asyncio.sleep(0.3)

    asyncio.run(move_three_sliders())
    assert lab.runs == 2
    cfg = lab.history.config
    assert (cfg["num_clients"], cfg["rounds"], cfg["local_epochs"]) == (11, 4, 2)


def test_displays_as_the_widget_with_a_text_fallback(lab):
    bundle = lab._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("FedAvgLab(8 clients, 6 rounds, dirichlet alpha=0.3")
    assert "0x" not in bundle["text/plain"]


def test_a_redraw_reuses_the_cached_baseline(lab, centralised_calls):
    # The redraw's speed is measured by benchmarks/bench_widgets.py, not asserted here.
    lab.update(num_clients=100, rounds=50)  # grows the cached baseline once
    calls = len(centralised_calls)
    lab.controls["num_clients"].value = 101
    assert len(centralised_calls) == calls and len(lab.history.test_accuracy) == 50
    assert set(lab.timings) >= {"baseline", "train", "draw", "total"}


def test_a_debounced_run_reports_errors_in_the_status(lab):
    lab.debounce = 0.01

    async def impossible_change():
        lab.controls["partition"].value = "shards"
        lab.controls["num_clients"].value = 1000
        await asyncio.sleep(0.2)

    asyncio.run(impossible_change())
    assert "Cannot run" in lab.status.value and lab.runs == 1


def test_the_noise_slider_turns_dp_on_and_shows_epsilon(lab):
    assert lab.controls["noise_multiplier"].value == 0 and lab.controls["max_norm"].disabled
    assert lab.controls["max_norm"].value == pytest.approx(0.1)  # a clip norm that suits the MLP
    lab.controls["noise_multiplier"].value = 1.0
    dp = lab.history.config["dp"]
    assert (dp.noise_multiplier, dp.max_norm, dp.delta) == (1.0, pytest.approx(0.1), 1e-5)
    assert not lab.controls["max_norm"].disabled
    eps = lab.history.final_epsilon
    assert len(lab.history.epsilon) == 6 and 0 < eps < float("inf")
    assert f"&epsilon; = {eps:.3g}</b> (&delta; = 1e-05)" in lab.status.value
    assert "DP z=1 S=0.1" in repr(lab)
    lab.update(noise_multiplier=3.0)
    assert lab.history.final_epsilon < eps  # more noise, less privacy spent
    lab.update(max_norm=1.0)
    assert lab.history.config["dp"].max_norm == pytest.approx(1.0)
    lab.controls["noise_multiplier"].value = 0.0  # back to plain FedAvg: no clipping at all
    assert lab.history.config["dp"] is None and lab.controls["max_norm"].disabled
    assert "&epsilon;" not in lab.status.value


def test_the_secure_aggregation_checkbox_runs_the_protocol(lab):
    assert lab.controls["secagg_graph"].disabled
    plain = lab.history
    lab.controls["secure_aggregation"].value = True
    assert not lab.controls["secagg_graph"].disabled
    assert len(lab.history.secagg) == 6 and lab.history.secagg[0].params.graph == "complete"
    state, ref = lab.history.model.state_dict(), plain.model.state_dict()
    assert max((state[k] - ref[k]).abs().max().item() for k in ref) <= 1e-6  # same model
    assert "secure aggregation: " in lab.status.value and "spent in rounds" in lab.status.value
    assert lab.timings["secagg"] > 0
    lab.update(secagg_graph="sparse", dropout=0.25)
    assert lab.history.config["secagg_graph"] == "sparse"
    assert [len(d) for d in lab.history.dropped] == [2] * 6
    assert "12 updates lost to dropouts" in lab.status.value
    assert "secure aggregation (sparse), dropout=0.25" in repr(lab)


def test_too_many_dropouts_and_too_costly_runs_explain_themselves(lab):
    before = lab.history
    assert lab.update(secure_aggregation=True, dropout=0.5) is None  # 4 of 8 left, t = 5
    assert "Cannot run: round 1: secure aggregation cannot recover the sum" in lab.status.value
    assert lab.history is before
    assert lab.update(num_clients=1000, dropout=0.0) is None  # refused before it starts
    assert "secure aggregation would take about" in lab.status.value
    assert "or choose the sparse graph" in lab.status.value
    assert lab.update(secure_aggregation=False) is not None  # plain FedAvg at 1,000 is quick


def test_a_redraw_with_dp_reuses_the_baseline_and_reports_epsilon(lab, centralised_calls):
    lab.update(num_clients=100, rounds=50, noise_multiplier=1.0, fraction=0.2)  # loads Opacus
    calls = len(centralised_calls)
    lab.controls["noise_multiplier"].value = 1.1
    assert len(centralised_calls) == calls and len(lab.history.epsilon) == 50


# --- what a learner trips over: typing a value, a long run, the labels -------------------------

def test_the_nodes_box_takes_a_typed_value_and_the_log_slider_follows(lab):
    box, slider = lab.controls["num_clients"], lab.nodes_slider
    assert isinstance(box, W.BoundedIntText) and (box.min, box.max) == (1, 1000)
    assert "type a value" in box.tooltip and "type a value" in slider.tooltip
    assert isinstance(slider, W.FloatLogSlider) and slider.description == "nodes (clients)"
    assert (slider.base, slider.min, slider.max) == (10, 0, 3)           # 1 to 1,000, log scale
    box.value = 437                                                        # typed, then Enter
    assert lab.runs == 2 and lab.history.config["num_clients"] == 437
    assert slider.value == pytest.approx(437)
    slider.value = 10 ** 1.30                                              # dragged: 19.95
    assert lab.runs == 3 and box.value == 20 and lab.history.config["num_clients"] == 20


def test_a_25_pixel_drag_moves_the_nodes_by_a_few_not_by_170(lab):
    steps = 25 / 260 * (lab.nodes_slider.max - lab.nodes_slider.min)     # 260 px wide
    assert 10 ** (1 + steps) - 10 < 10                                     # 10 -> 19, not 179


def test_the_status_says_running_before_the_run_and_estimates_a_long_one(lab, monkeypatch):
    seen = []
    real = widgets.run_fedavg

    def watching(config, **kwargs):
        seen.append(lab.status.value)
        return real(config, **kwargs)

    monkeypatch.setattr(widgets, "run_fedavg", watching)
    lab.update(num_clients=9)
    assert seen[-1] == "<i>running&hellip;</i>"                           # quick: no estimate
    lab._speed = 50.0                                                      # a very slow machine
    lab.update(rounds=8)
    assert seen[-1].startswith("<i>running&hellip; about ") and "8 rounds)" in seen[-1]
    assert "final test accuracy" in lab.status.value                      # then the summary


def test_the_estimate_grows_with_the_work_and_refuses_what_is_too_long(lab):
    base = lab.config().replace(num_clients=1000, rounds=190)
    dp = base.replace(dp=widgets.DPConfig(noise_multiplier=1.0, max_norm=0.1))
    assert 2 < lab.estimate_seconds(base) < lab.estimate_seconds(dp) < widgets.MAX_RUN_SECONDS
    assert lab.estimate_seconds(base.replace(rounds=95)) == pytest.approx(
        lab.estimate_seconds(base) / 2)
    before = lab.history
    assert lab.update(num_clients=1000, rounds=200, local_epochs=10, noise_multiplier=1.0) \
        is None
    assert "Cannot run: this run would take about" in lab.status.value
    assert "lower the nodes, the rounds, the local epochs or the fraction C" in lab.status.value
    assert lab.history is before and lab.progress.bar_style == "danger"


def test_the_lab_builds_one_fedavgconfig_and_shows_its_errors(lab):
    config = lab.config()
    assert isinstance(config, widgets.FedAvgConfig)
    assert (config.num_clients, config.rounds, config.alpha) == (8, 6, 0.3)
    assert lab.update(num_clients=1, secure_aggregation=True) is None
    assert "Cannot run: `secure_aggregation` needs at least 2 clients per round" \
        in lab.status.value


def test_the_summary_is_plain_english(lab):
    lab.target = 0.99
    lab.update(rounds=2)
    assert "99% not reached yet" in lab.status.value and "reached not yet" not in lab.status.value
    lab.target = 0.1
    lab.update(rounds=3)
    assert "10% reached in round 1" in lab.status.value


def test_the_plot_names_the_protections(lab):
    title = lab.figure.axes[0].get_title()
    assert "DP" not in title and "secure" not in title
    lab.update(noise_multiplier=1.0, secure_aggregation=True, dropout=0.25, secagg_graph="sparse")
    title = lab.figure.axes[0].get_title()
    eps = lab.history.final_epsilon
    assert f"DP z=1, S=0.1 (\u03b5={eps:.3g}); secure aggregation (sparse graph); dropout 0.25" \
        in title
    legend = [t.get_text() for t in lab.figure.axes[0].get_legend().get_texts()]
    assert legend[0] == "FedAvg, dirichlet alpha=0.3 + DP + secure aggregation"


def test_the_graph_toggle_has_room_for_its_labels(lab):
    graph = lab.controls["secagg_graph"]
    assert graph.options == ("complete", "sparse") and graph.style.button_width == "96px"


# --- languages: the Chinese lab, "auto", and the CJK font ---------------------------------------

@pytest.fixture(autouse=True)
def _no_language_from_the_environment(monkeypatch):
    """These tests choose the language themselves: nothing from the shell or a Jupyter server."""
    monkeypatch.delenv(widgets.LANG_ENV, raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)


@pytest.fixture()
def no_cjk_font(monkeypatch):
    """A system without any font that draws Chinese."""
    monkeypatch.setattr(plots, "cjk_font", lambda: None)


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def _png_title(lab: FedAvgLab) -> str:
    with PIL.Image.open(io.BytesIO(bytes(lab.image.value))) as png:
        return png.text["Title"]


def _has_han(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_lang_zh_puts_every_label_and_the_status_in_chinese():
    if plots.cjk_font() is None:
        pytest.skip("no CJK font here (apt-get install fonts-noto-cjk)")
    before = dict(matplotlib.rcParams)
    lab = fedavg_lab(num_clients=8, rounds=3, lang="zh")
    assert lab.lang == lab.plot_lang == "zh"
    assert lab.nodes_slider.description == "节点数（客户端数）"
    c = lab.controls
    assert (c["rounds"].description, c["local_epochs"].description) == ("通信轮次",
                                                                        "本地训练 epoch 数 E")
    assert c["partition"].options == (("IID", "iid"), ("Dirichlet", "dirichlet"),
                                      ("分片", "shards"))       # Chinese labels, same values
    assert c["secagg_graph"].options == (("完全图", "complete"), ("稀疏图", "sparse"))
    assert c["partition"].value == "dirichlet" and c["secagg_graph"].value == "complete"
    for name in ("partition", "alpha", "rounds", "fraction", "batch_size", "seed",
                 "noise_multiplier", "max_norm", "secure_aggregation", "dropout"):
        label = c[name].description
        assert label and label == label.strip() and (_has_han(label) or "α" in label), name
    assert lab.progress.description == "第 3 轮"
    assert lab.status.value.startswith("最终测试准确率 <b>")
    assert "尚未达到 90%" in lab.status.value or "轮达到 90%" in lab.status.value
    left, right = lab.figure.axes[:2]
    assert (left.get_xlabel(), left.get_ylabel()) == ("通信轮次", "测试准确率")
    assert (right.get_xlabel(), right.get_ylabel(), right.get_title()) == (
        "客户端", "类别", "各客户端的标签分布")
    assert left.get_title() == "FedAvg，Dirichlet α=0.1：8 个客户端，E=1"
    assert _png_title(lab) == left.get_title()      # the PNG carries the figure's title
    legend = [t.get_text() for t in left.get_legend().get_texts()]
    assert legend == ["FedAvg，Dirichlet α=0.1", "集中式训练（每轮 1 个 epoch）", "目标 90%"]
    font = plots.cjk_font()
    for text in lab.figure.findobj(Text):
        if _has_han(text.get_text()):
            assert font in text.get_fontfamily(), text.get_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # "Glyph ... missing" would raise here
        lab.figure.savefig(io.BytesIO(), format="png")
    assert dict(matplotlib.rcParams) == before      # no global setting changed


def test_the_chinese_lab_refuses_and_fails_in_chinese():
    lab = fedavg_lab(num_clients=8, rounds=3, lang="zh")
    assert lab.update(num_clients=1000, rounds=200, local_epochs=10, noise_multiplier=1.0) \
        is None
    assert "无法运行：这次运行预计需要约 " in lab.status.value
    assert "调小节点数、通信轮次、本地训练 epoch 数或参与比例 C" in lab.status.value
    assert lab.update(num_clients=1000, rounds=50, local_epochs=1, noise_multiplier=0.0,
                      secure_aggregation=True) is None
    assert "安全聚合预计需要约 " in lab.status.value and "或改用稀疏图" in lab.status.value
    lab.update(num_clients=8, rounds=3, noise_multiplier=1.0, secure_aggregation=True,
               dropout=0.25)
    status = lab.status.value
    assert "差分隐私：<b>&epsilon; = " in status and "安全聚合：各轮共用时 " in status
    assert "6 个更新因掉线而丢失" in status                       # 2 of 8 clients x 3 rounds
    title = lab.figure.axes[0].get_title()
    assert "差分隐私 z=1，S=0.1（ε=" in title and "；安全聚合（完全图）；掉线 0.25" in title
    assert _png_title(lab) == title.replace("\n", " · ")
    assert "（交互式：" in lab._repr_mimebundle_()["text/plain"]


def test_without_a_cjk_font_the_figure_falls_back_to_english_with_a_warning(no_cjk_font):
    with pytest.warns(plots.CJKFontWarning, match="fonts-noto-cjk"):
        lab = fedavg_lab(num_clients=8, rounds=3, lang="zh")
    assert (lab.lang, lab.plot_lang) == ("zh", "en")
    assert lab.nodes_slider.description == "节点数（客户端数）"    # the browser draws these
    assert lab.status.value.startswith("最终测试准确率")
    texts = _texts(lab.figure)
    assert "round" in texts and "Labels per client" in texts
    assert not any(_has_han(t) for t in texts)
    with pytest.warns(plots.CJKFontWarning):
        fig = plots.run_figure(lab.history, baseline=lab.baseline, lang="zh")
    assert fig.axes[0].get_xlabel() == "round"


def test_cjk_font_registers_a_font_installed_after_matplotlib_cached_its_list(monkeypatch):
    path = next((p for p in plots.font_manager.findSystemFonts()
                 if "notosanscjk" in p.lower().replace("-", "")), None)
    if path is None:
        pytest.skip("fonts-noto-cjk is not installed")
    manager = plots.font_manager.FontManager.__new__(plots.font_manager.FontManager)
    manager.__dict__.update(plots.font_manager.fontManager.__dict__)
    manager.ttflist = [f for f in manager.ttflist if "CJK" not in f.name]  # a stale cache
    monkeypatch.setattr(plots.font_manager, "fontManager", manager)
    plots.cjk_font.cache_clear()
    try:
        assert plots._known_cjk_font() is None
        assert plots.cjk_font() == "Noto Sans CJK SC"
    finally:
        plots.cjk_font.cache_clear()


def test_auto_follows_the_variable_then_the_notebook_then_the_folder(monkeypatch, tmp_path):
    assert widgets.resolve_lang("auto") == "en"                 # tests run from the repo root
    monkeypatch.setenv(widgets.LANG_ENV, "zh")
    assert widgets.resolve_lang() == "zh" and widgets.resolve_lang("en") == "en"
    monkeypatch.setenv(widgets.LANG_ENV, "fr")
    with pytest.raises(ValueError, match="`COURSE_LANG` must be 'en' or 'zh', got 'fr'"):
        widgets.resolve_lang()
    monkeypatch.delenv(widgets.LANG_ENV)
    notebook = tmp_path / "lab.ipynb"
    notebook.write_text(json.dumps({"metadata": {"edition": {"lang": "zh-CN"}}, "cells": []}))
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    assert widgets.resolve_lang() == "zh"
    notebook.write_text(json.dumps({"metadata": {}, "cells": []}))
    assert widgets.resolve_lang() == "en"
    monkeypatch.delenv("JPY_SESSION_NAME")
    (tmp_path / "zh").mkdir()
    monkeypatch.chdir(tmp_path / "zh")                          # Voila: the notebook's folder
    assert widgets.resolve_lang() == "zh"
    with pytest.raises(ValueError, match=r"`lang` must be one of \('en', 'zh', 'auto'\), got "
                                         r"'cn'"):
        fedavg_lab(num_clients=2, rounds=1, lang="cn")


def test_the_dashboards_code_is_one_cell_for_both_editions():
    """The Chinese dashboard's lab is Chinese through lang="auto", so its code cell may stay
    the English one (scripts/sync_editions.py copies it)."""
    root = Path(__file__).resolve().parents[1] / "notebooks"
    en, zh = (json.loads((root / p).read_text(encoding="utf-8"))
              for p in ("dashboard.ipynb", "zh/dashboard.ipynb"))
    code = [["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
            for nb in (en, zh)]
    assert code[0] == code[1] and "fedavg_lab(" in code[0][0] and "lang=" not in code[0][0]
    assert zh["metadata"]["edition"]["lang"] == "zh-CN"
