"""The course's explanatory figures: boxes and arrows, bit layouts, shares, block patterns.

Figures that illustrate one idea of one chapter (the figures of measured runs shared by
several chapters are in :mod:`course_lib.plots`): a notebook calls one function and shows
the figure it returns, so no chapter carries a long drawing cell. Each figure is drawn with
the current matplotlib style (the chapters set :data:`course_lib.plots.STYLE`) and is not
kept by pyplot: it displays once, as a cell's value.

- :func:`model_sizes`: published parameter counts of language models over time (chapter 1);
- :func:`block_patterns`: what ECB leaks and GCM does not, block by block (chapter 3.1);
- :func:`gcm`: AES-GCM, CTR-mode encryption and GHASH authentication (chapter 3.1);
- :func:`packed_plaintext`: the slots of one packed Paillier plaintext (chapter 3.2);
- :func:`share_histograms`: one additive share is uniform whatever the secret (chapter 3.2);
- :func:`shamir_shares`: why t - 1 shares say nothing about the secret (chapter 3.2);
- :func:`fedavg_round`: one round of federated averaging (chapter 3.3).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

__all__ = ["model_sizes", "block_patterns", "gcm", "packed_plaintext", "share_histograms",
           "shamir_shares", "fedavg_round"]


def _figure(figsize: tuple[float, float]) -> Figure:
    fig = plt.figure(figsize=figsize)
    plt.close(fig)  # shown as the cell's value, not again by the inline backend
    return fig


def model_sizes(models: Sequence[tuple[str, dt.date, float]]) -> Figure:
    """Parameter counts (log scale) against publication date, one labelled point a model."""
    fig = _figure((8, 3.8))
    ax = fig.subplots()
    names, dates, params = zip(*models)
    ax.scatter(dates, params, color="tab:blue", zorder=3)
    label_offsets = {"LLaMA-65B": (-30, -13), "Llama 2 70B": (-10, 7)}  # no overlapping labels
    for name, date, n in models:
        ax.annotate(name, (date, n), xytext=label_offsets.get(name, (5, -4)),
                    textcoords="offset points", fontsize=9)
    ax.set(yscale="log", ylabel="parameters (log scale)", ylim=(5e7, 2e12),
           xlim=(dt.date(2018, 1, 1), dt.date(2025, 6, 1)),
           title="Published parameter counts of well-known language models")
    ax.grid(True, which="major", alpha=0.4)
    return fig


def block_patterns(panels: Mapping[str, bytes], shape: tuple[int, int]) -> Figure:
    """Top: each byte string of ``panels`` drawn as an image of ``shape``; bottom: its 16-byte
    blocks coloured by identity (equal blocks, equal colour), with the number of distinct ones.
    The first panel is the plaintext (drawn dark on light), the others ciphertexts."""
    fig = _figure((7.5, 5.4))
    axes = fig.subplots(2, len(panels))
    for col, (title, data) in enumerate(panels.items()):
        pixels = np.frombuffer(data, dtype=np.uint8)
        _, block_id = np.unique(pixels.reshape(-1, 16), axis=0, return_inverse=True)
        axes[0, col].imshow(pixels.reshape(shape), cmap="gray_r" if col == 0 else "gray")
        rows = block_id.size // (shape[1] // 16)
        axes[1, col].imshow(block_id.reshape(rows, shape[1] // 16), cmap="viridis",
                            aspect=1 / 16, interpolation="nearest")  # (rows, blocks per row)
        axes[0, col].set_title(title)
        axes[1, col].set_title(f"{block_id.max() + 1} distinct blocks of {block_id.size}")
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def gcm() -> Figure:
    """AES-GCM as boxes and arrows: counter blocks through AES, XOR with the plaintext, GHASH
    over the associated data and the ciphertext, the tag."""
    fig = _figure((10, 4.4))
    ax = fig.subplots()
    ax.set(xlim=(0, 12.6), ylim=(0.1, 7.0))
    ax.axis("off")
    nodes = {"n2": (4.0, 6.4, "nonce ‖ 2"), "n3": (7.0, 6.4, "nonce ‖ 3"),
             "n1": (10.5, 6.4, "nonce ‖ 1"),
             "e2": (4.0, 5.1, "AES$_k$"), "e3": (7.0, 5.1, "AES$_k$"),
             "e1": (10.5, 5.1, "AES$_k$"),
             "p1": (2.2, 3.8, "plaintext 1"), "p2": (5.3, 3.8, "plaintext 2"),
             "x2": (4.0, 3.8, "⊕"), "x3": (7.0, 3.8, "⊕"),
             "c1": (4.0, 2.5, "ciphertext 1"), "c2": (7.0, 2.5, "ciphertext 2"),
             "ad": (1.3, 2.5, "associated\ndata"), "gh": (5.5, 1.0, "GHASH$_H$"),
             "x1": (10.5, 1.0, "⊕"), "tag": (11.9, 1.0, "tag")}
    colour = {"n": "#dde8f5", "e": "#f7d9a8", "c": "#e3e3e3", "g": "#cfe8cf", "t": "#cfe8cf"}
    patches = {}
    for name, (x, y, label) in nodes.items():
        w, h = (0.45, 0.45) if label == "⊕" else (1.1 if name in ("ad", "tag") else 1.6, 0.6)
        patches[name] = ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h,
                                                    boxstyle="round,pad=0.06",
                                                    fc=colour.get(name[0], "white")))
        ax.text(x, y, label, ha="center", va="center", fontsize=10)
    ax.text(5.5, 0.35, "H = AES$_k$(0$^{128}$), the authentication key", ha="center",
            fontsize=9)
    edges = ("n2 e2|n3 e3|n1 e1|e2 x2|e3 x3|p1 x2|p2 x3|x2 c1|x3 c2|c1 gh|c2 gh|ad gh|e1 x1|"
             "gh x1|x1 tag")
    for pair in edges.split("|"):
        a, b = pair.split()
        ax.add_patch(FancyArrowPatch(nodes[a][:2], nodes[b][:2], patchA=patches[a],
                                     patchB=patches[b], arrowstyle="-|>", mutation_scale=12,
                                     lw=1.2))
    ax.set_title("AES-GCM: CTR-mode encryption (top) and GHASH authentication (bottom)")
    return fig


def packed_plaintext(*, slot_bits: int, slots: int, key_bits: int, value_bits: int,
                     headroom: int) -> Figure:
    """The bit layout of one packed plaintext (top) and of its first three slots (bottom):
    ``slots`` slots of ``slot_bits`` bits, each a value, its headroom and a sign bit."""
    B, K = slot_bits, slots
    fig = _figure((9, 3.1))
    top, zoom = fig.subplots(2, 1)
    top.broken_barh([(k * B, B) for k in range(K)], (0, 1),
                    facecolors=["#4c72b0", "#8fb0d9"] * (K // 2 + 1))
    top.broken_barh([(K * B, key_bits - K * B)], (0, 1), facecolors="#dddddd")
    top.set(xlim=(0, key_bits), yticks=[],
            xlabel=f"bit position in the {key_bits}-bit plaintext",
            title=f"{K} slots of {B} bits (alternating blues); grey: unused top bits")
    parts = [(value_bits, "#4c72b0", f"value ({value_bits} bits)"),
             (headroom, "#f2b134", "headroom"), (1, "#c44e52", "sign")]
    for k in range(3):
        start_bit = k * B
        for width, colour, label in parts:
            zoom.broken_barh([(start_bit, width)], (0, 1), facecolors=colour,
                             edgecolor="white", label=label if k == 0 else None)
            start_bit += width
        zoom.text(k * B + B / 2, 1.15, f"slot {k}", ha="center")
    zoom.set(xlim=(0, 3 * B), ylim=(0, 1.5), yticks=[],
             xlabel="bit position (first three slots)")
    zoom.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def share_histograms(shares: Mapping[int, np.ndarray], *, prime: int) -> Figure:
    """For each secret of ``shares`` (secret -> its many sampled last shares mod ``prime``), a
    histogram of the share's values beside the uniform count."""
    fig = _figure((8.5, 2.8))
    axes = fig.subplots(1, len(shares), sharey=True)
    for ax, (value, last) in zip(axes, shares.items()):
        ax.hist(last.astype(int), bins=np.arange(prime + 1), color="#4c72b0")
        ax.axhline(len(last) / prime, color="black", linestyle="--", label="uniform")
        ax.set(title=f"share s − r of secret {value} (mod {prime})", xlabel="share value")
    axes[0].set_ylabel("count")
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    return fig


def shamir_shares(field_curve: Sequence[int], shares: Sequence[tuple[int, int]]) -> Figure:
    """Left: over the reals, two shares of a degree-2 polynomial fit any secret; right: the
    library's polynomial over GF(p), ``field_curve[x] = f(x) mod p`` for ``x = 0 .. p - 1``,
    with its ``shares`` and the secret ``f(0)``."""
    prime = len(field_curve)
    grid = np.linspace(0, 5.5, 200)
    real_f = np.polynomial.Polynomial([42, 13, -3])  # an illustrative f(x) = 42 + 13x - 3x^2
    fig = _figure((11, 3.6))
    left, right = fig.subplots(1, 2)
    left.plot(grid, real_f(grid), color="#4c72b0", label="f, secret f(0) = 42")
    left.scatter(range(1, 6), real_f(np.arange(1, 6)), color="#4c72b0", zorder=3,
                 label="shares 1..5")
    for other in (30, 55):   # the unique parabola through (0, other) and shares 1 and 2
        fit = np.polynomial.Polynomial.fit([0, 1, 2], [other, real_f(1), real_f(2)], deg=2)
        left.plot(grid, fit(grid), linestyle="--", label=f"also fits shares 1, 2: f(0) = {other}")
    left.set(xlabel="x (party)", ylabel="f(x)", title="intuition over the reals (t = 3)")
    left.legend()
    right.scatter(range(prime), field_curve, s=8, color="#999999",
                  label=f"f(x) mod {prime}, x = 0..{prime - 1}")
    right.scatter(*zip(*shares), color="#4c72b0", zorder=3, label=f"the {len(shares)} shares")
    right.scatter([0], [field_curve[0]], color="#c44e52", marker="*", s=150, zorder=3,
                  label="secret f(0)")
    right.set(xlabel="x", ylabel=f"f(x) mod {prime}",
              title=f"the real thing: a polynomial over GF({prime})")
    right.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def fedavg_round() -> Figure:
    """One round of federated averaging: the server on top, K clients below, the five steps."""
    fig = _figure((10, 4.8))
    ax = fig.subplots()
    ax.set(xlim=(0, 10), ylim=(0, 6.2))
    ax.axis("off")
    server = ("Server\n① initialise / hold the global model $w_t$\n"
              "④ aggregate: $w_{t+1} = \\sum_k \\, (n_k / n) \\; w_k^{t+1}$")
    ax.text(5, 5.25, server, ha="center", va="center", fontsize=11, linespacing=1.6,
            bbox=dict(boxstyle="round,pad=0.5", facecolor="#dce6f2", edgecolor="#4c72b0"))
    down = dict(arrowstyle="-|>", color="#4c72b0", linewidth=2)
    up = dict(arrowstyle="-|>", color="#dd8452", linewidth=2)
    for x, k in ((1.5, "1"), (5.0, "2"), (8.5, "K")):
        ax.text(x, 1.55, f"Client {k}\n② train $w_t$ on own data\n$E$ epochs, batches of $B$",
                ha="center", va="center", fontsize=10, linespacing=1.5,
                bbox=dict(boxstyle="round,pad=0.5", facecolor="#fbe5c8", edgecolor="#dd8452"))
        ax.text(x, 0.3, f"data $D_{k}$, $n_{k}$ samples: never leaves", ha="center",
                fontsize=9, color="#555555")
        ax.annotate("", xy=(x - 0.35, 2.45), xytext=(5 + (x - 5) * 0.45 - 0.35, 4.45),
                    arrowprops=down)
        ax.annotate("", xy=(5 + (x - 5) * 0.45 + 0.35, 4.45), xytext=(x + 0.35, 2.45),
                    arrowprops=up)
    ax.text(6.75, 1.55, "· · ·", ha="center", va="center", fontsize=16)
    ax.text(2.05, 3.55, "① / ⑤ send $w_t$", color="#4c72b0", fontsize=10, ha="right")
    ax.text(3.55, 3.05, "③ upload\n$w_k^{t+1}, n_k$", color="#dd8452", fontsize=10, ha="left")
    ax.text(9.9, 3.45, "⑤ the new $w_{t+1}$\ngoes out: next round", color="#4c72b0",
            fontsize=10, ha="right")
    ax.set_title("One round of federated averaging (FedAvg); repeat for T rounds", fontsize=12)
    fig.tight_layout()
    return fig
