"""The resource cache: one download per URI under concurrent threads and processes."""

from __future__ import annotations

import gzip
import multiprocessing
import os
import stat
import threading
from pathlib import Path

import pytest

from scitq.config import TransferSettings
from scitq.errors import TransferError
from scitq.transfer import ResourceCache
from tests.fixtures.servers import HttpServer, fast_settings


def _resource(http_server: HttpServer, name: str, size: int = 300000) -> tuple[str, bytes]:
    (http_server.root / "res").mkdir(exist_ok=True)
    data = os.urandom(size)
    (http_server.root / "res" / name).write_bytes(gzip.compress(data, compresslevel=1))
    return http_server.url(f"res/{name}"), data


def test_threads_download_once_and_links_are_read_only(
    http_server: HttpServer, tmp_path: Path
) -> None:
    url, data = _resource(http_server, "threads.gz")
    settings = fast_settings(tmp_path)
    uri = f"{url}|gunzip"
    results: list[int] = []
    errors: list[BaseException] = []

    def task(number: int) -> None:
        try:
            cache = ResourceCache(settings)  # as separate executions would
            results.append(cache.link_into(uri, tmp_path / f"task{number}" / "resource"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=task, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert http_server.gets["/res/threads.gz"] == 1
    assert sorted(results)[-1] > 0 and sorted(results)[:-1] == [0] * 7
    for number in range(8):
        linked = tmp_path / f"task{number}" / "resource" / "threads"
        assert linked.read_bytes() == data
        assert not linked.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    first = (tmp_path / "task0" / "resource" / "threads").stat()
    assert first.st_nlink >= 9  # hard links to the one cached copy
    with pytest.raises(PermissionError):
        if os.geteuid() == 0:
            raise PermissionError("root ignores file modes; the mode check above holds")
        (tmp_path / "task0" / "resource" / "threads").open("ab")


def _process_task(settings: TransferSettings, uri: str, target: str) -> None:
    ResourceCache(settings).link_into(uri, Path(target))


def test_processes_download_once(http_server: HttpServer, tmp_path: Path) -> None:
    url, data = _resource(http_server, "procs.gz")
    settings = fast_settings(tmp_path)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_process_task, args=(settings, f"{url}|gunzip", str(tmp_path / f"p{n}"))
        )
        for n in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert http_server.gets["/res/procs.gz"] == 1
    for number in range(4):
        assert (tmp_path / f"p{number}" / "procs").read_bytes() == data


def test_index_survives_restart_and_forget(http_server: HttpServer, tmp_path: Path) -> None:
    url, _ = _resource(http_server, "restart.gz", 1000)
    settings = fast_settings(tmp_path)
    first = ResourceCache(settings)
    directory, size = first.get(url)
    assert size > 0
    assert url in first.entries()
    again, size_again = ResourceCache(settings).get(url)  # a restarted agent
    assert (again, size_again) == (directory, 0)
    assert http_server.gets["/res/restart.gz"] == 1
    ResourceCache(settings).forget(url)
    assert url not in ResourceCache(settings).entries()
    ResourceCache(settings).get(url)
    assert http_server.gets["/res/restart.gz"] == 2


def test_failed_download_is_not_cached(http_server: HttpServer, tmp_path: Path) -> None:
    settings = fast_settings(tmp_path)
    (http_server.root / "res").mkdir(exist_ok=True)
    (http_server.root / "res" / "plain.txt").write_text("not gzip")
    cache = ResourceCache(settings)
    uri = http_server.url("res/plain.txt") + "|gunzip"
    with pytest.raises(TransferError, match="not a gzip file"):
        cache.link_into(uri, tmp_path / "task")
    assert cache.entries() == {}
    assert not any((settings.cache_dir / "items").iterdir())
    assert not (tmp_path / "task").exists() or not any((tmp_path / "task").iterdir())
