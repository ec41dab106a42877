"""`nightlab papers [LAB] QUERY`, a real subprocess, on a lab whose literature cache was
filled through the Library with fake sources (no network is ever touched: the cache is
fresh, or the command is offline)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from nightlab.agents.literature import Paper
from nightlab.config import load_config
from nightlab.loop.library import Library
from nightlab.store.db import Store

from conftest import NIGHTLAB, cli

LORA = Paper(
    title="LoRA: Low-Rank Adaptation of Large Language Models",
    authors=["Edward Hu", "Yelong Shen", "Phillip Wallis", "Zeyuan Allen-Zhu"],
    year=2021,
    venue="ICLR",
    abstract="We propose Low-Rank Adaptation, or LoRA, which freezes the pretrained weights. "
    "It then injects trainable rank decomposition matrices into each layer.",
    arxiv="2106.09685",
    url="https://arxiv.org/abs/2106.09685",
    sources=["arxiv"],
)
HOSTILE = Paper(
    title="[bold red]Markup[/] and \x1b[31mescapes\x1b[0m\nnewline",
    authors=["Ünïcødé Ⅱ"],
    abstract="x" * 2000,
    doi="10.1/hostile",
    sources=["openalex"],
)


class Fake:
    def __init__(self, name, papers):
        self.name, self.papers = name, papers

    def search(self, query, limit):
        return self.papers[:limit]

    def get(self, key):
        return None


@pytest.fixture
def lab(make_lab):
    lab = make_lab()
    store = Store(lab / ".nightlab" / "state.db")
    store.migrate()
    try:
        lib = Library(load_config(lab), store, [Fake("arxiv", [LORA]), Fake("openalex", [HOSTILE])])
        assert len(lib.search("low rank adaptation").papers) == 2
    finally:
        store.close()
    return lab


def test_json_offline_serves_the_lab_cache(lab):
    out = json.loads(cli("papers", str(lab), "Low  rank adaptation", "--offline", "--json").stdout)
    assert out["query"] == "Low rank adaptation"
    assert out["cached"] is True and out["notes"] == []
    assert [p["arxiv"] for p in out["papers"]] == ["2106.09685", None]
    assert out["papers"][0]["authors"][3] == "Zeyuan Allen-Zhu"
    assert out["papers"][1]["doi"] == "10.1/hostile"


def test_plain_output_lists_each_paper_compactly(lab):
    # fresh in the cache: no --offline needed, and no request is made
    proc = cli("papers", str(lab), "low rank adaptation")
    text = proc.stdout
    assert "2 paper(s) for “low rank adaptation” (from the lab's cache)" in text
    assert "1. LoRA: Low-Rank Adaptation of Large Language Models (2021)" in text
    assert "Edward Hu, Yelong Shen, Phillip Wallis et al. — ICLR" in text
    assert "arxiv:2106.09685  https://arxiv.org/abs/2106.09685" in text
    assert "We propose Low-Rank Adaptation, or LoRA, which freezes the pretrained weights." in text
    assert "It then injects" not in text  # one sentence only
    assert "2. [bold red]Markup[/] and [31mescapes [0m newline (n.d.)" in text
    assert "\x1b" not in text
    last = [line for line in text.splitlines() if line.startswith("   xxx")]
    assert len(last) == 1 and len(last[0].strip()) <= 160 and last[0].endswith("…")
    assert proc.stderr == ""


def test_nothing_cached_offline_says_so_and_exits_0(lab):
    proc = cli("papers", str(lab), "quantum gravity", "--offline")
    assert proc.stdout.strip() == "no papers for “quantum gravity” (the cache only: offline)"
    assert "warning: offline: no cached papers for “quantum gravity”" in proc.stderr
    out = json.loads(cli("papers", str(lab), "quantum gravity", "--offline", "--json").stdout)
    assert out == {"query": "quantum gravity", "cached": True, "papers": [],
                   "notes": ["offline: no cached papers for “quantum gravity”"]}  # fmt: skip


def test_lab_omitted_uses_the_current_folder(lab):
    env = {**os.environ, "NIGHTLAB_PLAIN": "1"}
    command = [*NIGHTLAB, "papers", "low", "rank", "adaptation", "--offline", "--json"]
    proc = subprocess.run(command, cwd=lab, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["papers"]) == 2


@pytest.mark.parametrize(
    ("query", "said"),
    [("   ", "empty query"), ("x" * 301, "query too long: 301 characters (at most 300)")],
)
def test_a_bad_query_exits_2_with_one_line(lab, query, said):
    proc = cli("papers", str(lab), query, "--offline", check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and said in proc.stderr and "Traceback" not in proc.stderr


def test_a_missing_lab_exits_2_with_one_line(tmp_path):
    proc = cli("papers", str(tmp_path / "nolab") + "/", "lora", "--offline", check=False)
    assert proc.returncode == 2 and "no nightlab.toml" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "nolab").exists()
