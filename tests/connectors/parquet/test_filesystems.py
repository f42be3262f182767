"""ParquetSink on filesystems named by URL: an S3-compatible object store, and fsspec's."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import orjson
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from structlog.testing import capture_logs

from asyncetl import ListSource, Pipeline
from asyncetl.connectors.parquet import ParquetCheckpointStore, ParquetSink
from tests.connectors.parquet.conftest import S3

pytestmark = pytest.mark.anyio

MANIFEST = "_asyncetl_manifest.json"


def orders(count: int) -> list[dict[str, object]]:
    return [{"id": i, "kind": "ab"[i % 2], "amount": i * 1.5} for i in range(count)]


def pipeline(url: str, count: int) -> Pipeline:
    return Pipeline(
        "orders",
        ListSource(orders(count), name="orders"),
        ParquetSink(url, partition=["kind"]),
        checkpoints=ParquetCheckpointStore(url),
        max_batch_size=10,
    )


@pytest.fixture
def bucket(s3: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[pafs.S3FileSystem, str]]:
    """A new bucket on the S3 endpoint, removed after the test; the credentials in the env."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    filesystem = pafs.S3FileSystem(
        endpoint_override=s3.host,
        scheme=s3.scheme,
        region="us-east-1",
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        allow_bucket_creation=True,
        allow_bucket_deletion=True,
    )
    name = f"asyncetl-{secrets.token_hex(4)}"
    filesystem.create_dir(name)
    try:
        yield filesystem, name
    finally:
        filesystem.delete_dir(name)


def listing(filesystem: pafs.FileSystem, root: str) -> list[str]:
    infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    return sorted(i.path.removeprefix(root + "/") for i in infos if i.type == pafs.FileType.File)


async def test_an_s3_url_commits_files_and_manifest_and_a_rerun_resumes(
    s3: S3, bucket: tuple[pafs.S3FileSystem, str]
) -> None:
    filesystem, name = bucket
    url = f"s3://{name}/orders?endpoint_override={s3.host}&scheme={s3.scheme}&region=us-east-1"
    root = f"{name}/orders"
    with capture_logs():
        stats = await pipeline(url, 25).run()
    assert stats.records_out == 25
    found = listing(filesystem, root)
    with filesystem.open_input_stream(f"{root}/{MANIFEST}") as stream:
        manifest = orjson.loads(stream.read())
    assert manifest["checkpoints"] == {"orders": {"orders": 25}}
    assert found == sorted([MANIFEST, *manifest["files"]])
    assert sorted(f.partition("/")[0] for f in manifest["files"]) == ["kind=a", "kind=b"]
    table = ds.dataset(root, filesystem=filesystem, format="parquet", partitioning="hive")
    rows = table.to_table().to_pylist()
    assert sorted(rows, key=lambda r: int(str(r["id"]))) == orders(25)
    assert await ParquetCheckpointStore(url).load("orders", "orders") == 25
    # A file renamed into place whose commit never came is removed at the next open.
    orphan = f"{root}/kind=a/part-{'0' * 20}-00000.parquet"
    pq.write_table(table.to_table().slice(0, 1), orphan, filesystem=filesystem)
    with capture_logs():
        again = await pipeline(url, 30).run()
    assert again.records_in == 5  # resumed after the 25 committed
    with filesystem.open_input_stream(f"{root}/{MANIFEST}") as stream:
        manifest = orjson.loads(stream.read())
    assert listing(filesystem, root) == sorted([MANIFEST, *manifest["files"]])
    rows = ds.dataset(root, filesystem=filesystem, format="parquet", partitioning="hive")
    assert sorted(rows.to_table().column("id").to_pylist()) == list(range(30))


async def test_an_fsspec_url_pyarrow_does_not_know_works_too() -> None:
    from fsspec.implementations.memory import MemoryFileSystem

    url = f"memory://asyncetl-{secrets.token_hex(4)}/orders"
    try:
        with capture_logs():
            stats = await pipeline(url, 12).run()
        assert stats.records_out == 12
        assert await ParquetCheckpointStore(url).load("orders", "orders") == 12
        memory = pafs.PyFileSystem(pafs.FSSpecHandler(MemoryFileSystem()))
        root = url.removeprefix("memory:/")
        rows = ds.dataset(root, filesystem=memory, format="parquet", partitioning="hive")
        assert sorted(rows.to_table().column("id").to_pylist()) == list(range(12))
        assert MANIFEST in listing(memory, root)
    finally:
        MemoryFileSystem().rm(url.removeprefix("memory://"), recursive=True)


async def test_a_url_no_filesystem_knows_is_refused_in_one_sentence() -> None:
    with pytest.raises(
        OSError, match="neither pyarrow nor fsspec has a filesystem for 'nope://x/y'"
    ):
        ParquetSink("nope://x/y")
