"""exports.source: Label Studio export files streamed task by task, with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exports import source


def _tasks(n: int) -> list[dict]:
    return [{"id": i, "data": {"image": f"s3://b/{i}.png", "note": "é\u2603 \"q\" [x]"},
             "annotations": [{"id": 10 * i, "result": [{"value": {"x": 1.5e-3 * i,
                                                                 "rle": list(range(i % 40))}}],
                              "ground_truth": i % 2 == 0}],
             "predictions": []} for i in range(1, n + 1)]


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_export_file_round_trip(tmp_path: Path, monkeypatch, indent, chunk: int) -> None:
    monkeypatch.setattr(source, "_CHUNK_CHARS", chunk)
    tasks = _tasks(30)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks, indent=indent, ensure_ascii=False), encoding="utf-8")
    assert list(source.iter_export_file(path)) == tasks


def test_empty_export_is_no_tasks(tmp_path: Path) -> None:
    path = tmp_path / "export.json"
    path.write_text(" [ ]\n")
    assert list(source.iter_export_file(path)) == []


def test_export_file_is_streamed(tmp_path: Path, monkeypatch) -> None:
    """The first task arrives after one chunk of a file much larger than a chunk."""
    monkeypatch.setattr(source, "_CHUNK_CHARS", 4096)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(_tasks(2000)))
    reads = []
    more = source._Chunks.more
    monkeypatch.setattr(source._Chunks, "more", lambda self: reads.append(1) or more(self))
    tasks = source.iter_export_file(path)
    assert next(tasks)["id"] == 1
    assert len(reads) == 1 and path.stat().st_size > 50 * 4096
    assert sum(1 for _ in tasks) == 1999


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"id": 1, "data": {}}', r"must start with '\['"),
        ("", "empty file"),
        ('[{"id": 1, "data": {}}, {"id": 2, "data": {"a": 1,, }}]',
         r"task #2 .*after task id 1\): malformed JSON: Expecting"),
        ('[{"id": 1, "data": {}}, {"id": 2, "data": {"a": "unterminated}}]',
         r"task #2 .*malformed JSON: Unterminated string"),
        ('[{"id": 1, "data": {}}', r"task #2 .*truncated"),
        ('[{"id": 1, "data": {}},]', r"trailing comma"),
        ('[{"id": 1, "data": {}} {"id": 2}]', r"expected ',' or '\]'"),
        ('[{"id": 1, "data": {}}] x', r"extra content"),
        ('[{"id": 1, "data": {}}, [1, 2]]', r"task #2 .*must be an object with 'id' and 'data'"),
        ('[{"data": {}}]', r"task #1 .*'id' and 'data'"),
    ],
)
def test_malformed_export_files_are_named(tmp_path: Path, monkeypatch, text: str,
                                          message: str) -> None:
    monkeypatch.setattr(source, "_CHUNK_CHARS", 5)
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(source.SourceError, match=message) as info:
        list(source.iter_export_file(path))
    assert "bad.json" in str(info.value)


def test_missing_export_file(tmp_path: Path) -> None:
    with pytest.raises(source.SourceError, match="cannot open"):
        list(source.iter_export_file(tmp_path / "nope.json"))
