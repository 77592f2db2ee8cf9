"""``python -m memlab.eval cache``: what the cache holds, dropping what is no longer
needed, compacting the embedding file; dry runs delete nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_embed import TEXTS, _legacy_file

from memlab.embed import CachedEmbedder, EmbeddingCache
from memlab.embed.hashing import HashEmbedder
from memlab.eval.cli import main
from memlab.testing.embedders import CountingEmbedder


def test_cache_lists_drops_and_compacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MEMLAB_CACHE_DIR", str(tmp_path))
    path = tmp_path / "embeddings.sqlite"
    _legacy_file(path, "old-model@1", TEXTS)
    CachedEmbedder(CountingEmbedder(HashEmbedder(), "runs/embedders/x@2"), path).encode(TEXTS)
    (tmp_path / "faiss" / "ivf-v2-abc").mkdir(parents=True)
    (tmp_path / "faiss" / "ivf-v2-abc" / "000000001000.faiss").write_bytes(b"x" * 5000)

    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert "3 vectors in the first layout (~2.7x their size on disk)" in out
    assert "        3    6.1 kB  old-model@1  (first layout)" in out
    assert "        3    6.1 kB  runs/embedders/x@2\n" in out
    assert "faiss/" in out and "1 faiss indexes, rebuilt when missing" in out

    assert main(["cache", "--drop-embeddings", "runs/*", "--drop", "faiss"]) == 0
    out = capsys.readouterr().out
    assert "would delete (add --yes): 3 vectors of runs/embedders/x@2" in out
    assert "would delete (add --yes): faiss/ (5.0 kB)" in out
    assert EmbeddingCache(path).count() == 6 and (tmp_path / "faiss").exists()

    assert main(["cache", "--drop-embeddings", "runs/*", "--drop", "faiss", "--yes",
                 "--compact"]) == 0
    out = capsys.readouterr().out
    assert "3 vectors deleted" in out and "embeddings.sqlite compacted:" in out
    assert not (tmp_path / "faiss").exists()
    assert EmbeddingCache(path).models() == [("old-model@1", 3, 3 * 512 * 4, False)]
    model = CountingEmbedder(HashEmbedder(), "old-model@1")
    np.testing.assert_array_equal(CachedEmbedder(model, path).encode(TEXTS),
                                  HashEmbedder().encode(TEXTS))
    assert model.calls == []  # compacted, not lost

    assert main(["cache", "--drop-embeddings", "nothing*"]) == 2
    assert "no cached embedding model matches nothing*; the cache holds:\n  old-model@1" in (
        capsys.readouterr().err)
