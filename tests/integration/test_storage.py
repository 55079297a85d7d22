"""mmm_core.storage against a real S3 server (SeaweedFS on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from pathlib import Path

import pytest
import urllib3

from mmm_core.storage import (
    PART_SUFFIX,
    StorageError,
    client_from_env,
    download_prefix,
    file_md5,
    list_objects,
    make_client,
    read_bytes,
    resolve_dataset_root,
    upload_directory,
    write_bytes,
)

pytestmark = pytest.mark.servers


@pytest.fixture(scope="session")
def sysu_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated SYSU-MM01 tree (8 identities, tiny images)."""
    from mmm_core.data.synthetic import generate_sysu

    root = tmp_path_factory.mktemp("sysu") / "SYSU-MM01"
    generate_sysu(root, ids=8, seed=0, preset="tiny")
    return root


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def all_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


class CountingClient:
    """A real client whose `get_object` calls are counted, and optionally broken.

    With ``break_after=n`` the (n+1)-th download sends its first block and then drops the
    connection, as a killed pod or a network failure would.
    """

    def __init__(self, client, break_after: int | None = None):
        self._client = client
        self.break_after = break_after
        self.downloads: list[str] = []
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._client, name)

    def get_object(self, bucket, key, *args, **kwargs):
        with self._lock:
            self.downloads.append(key)
            broken = self.break_after is not None and len(self.downloads) > self.break_after
        response = self._client.get_object(bucket, key, *args, **kwargs)
        return _BrokenResponse(response) if broken else response


class _BrokenResponse:
    def __init__(self, response):
        self._response = response

    def stream(self, amount):
        yield next(iter(self._response.stream(8)))
        raise urllib3.exceptions.ProtocolError("Connection broken: simulated interruption")

    def close(self):
        self._response.close()

    def release_conn(self):
        self._response.release_conn()


def upload_tree(s3, tree: Path) -> str:
    uri = f"s3://{s3.data_bucket}/{uuid.uuid4().hex[:12]}/sysu"
    count = upload_directory(tree, uri, client=s3.client())
    assert count == len(all_files(tree))
    return uri


def test_resolve_dataset_root_mirrors_every_byte(minio_env, sysu_tree, tmp_path):
    uri = upload_tree(minio_env, sysu_tree)
    cache = tmp_path / "cache"
    root = resolve_dataset_root(uri, cache)  # client from MINIO_* variables
    assert root == cache / "s3" / minio_env.data_bucket / Path(*uri.split("/")[3:])
    assert files_of(root) == files_of(sysu_tree)
    assert not list(cache.rglob(f"*{PART_SUFFIX}"))
    manifests = list((cache / "manifests").glob("*.json"))
    assert len(manifests) == 1
    recorded = json.loads(manifests[0].read_text())
    assert recorded["uri"] == uri
    assert set(recorded["objects"]) == set(files_of(sysu_tree))
    # the SYSU reader finds the same images in the mirror as in the original
    from mmm_core.data import train_manifest

    assert len(train_manifest("sysu", root, 1)) == len(train_manifest("sysu", sysu_tree, 1))


def test_local_paths_are_returned_unchanged(tmp_path):
    assert resolve_dataset_root(str(tmp_path / "data"), tmp_path / "cache") == tmp_path / "data"
    assert not (tmp_path / "cache").exists()


def test_rerun_downloads_only_what_changed(s3_server, sysu_tree, tmp_path):
    uri = upload_tree(s3_server, sysu_tree)
    cache = tmp_path / "cache"
    first = CountingClient(s3_server.client())
    root = download_prefix(uri, cache, client=first)
    assert len(first.downloads) == len(all_files(sysu_tree))

    again = CountingClient(s3_server.client())
    assert download_prefix(uri, cache, client=again) == root
    assert again.downloads == []

    # one object replaced, one deleted in the bucket
    changed, deleted = sorted(files_of(sysu_tree))[:2]
    write_bytes(f"{uri}/{changed}", b"new content", client=s3_server.client())
    _, prefix = uri[len("s3://") :].split("/", 1)
    s3_server.client().remove_object(s3_server.data_bucket, f"{prefix}/{deleted}")
    third = CountingClient(s3_server.client())
    download_prefix(uri, cache, client=third)
    assert [key.rsplit("/sysu/", 1)[1] for key in third.downloads] == [changed]
    assert (root / changed).read_bytes() == b"new content"
    assert not (root / deleted).exists()


def test_interrupted_download_leaves_no_partial_file_and_resumes(s3_server, sysu_tree, tmp_path):
    uri = upload_tree(s3_server, sysu_tree)
    cache = tmp_path / "cache"
    expected = files_of(sysu_tree)
    broken = CountingClient(s3_server.client(), break_after=20)
    with pytest.raises(StorageError, match="simulated interruption"):
        download_prefix(uri, cache, client=broken, workers=1)
    root = cache / "s3" / s3_server.data_bucket / Path(*uri.split("/")[3:])
    present = files_of(root)
    assert len(present) == 20  # the completed objects only, each one whole
    assert all(expected[rel] == data for rel, data in present.items())
    assert not list(cache.rglob(f"*{PART_SUFFIX}"))
    assert not list((cache / "manifests").glob("*.json"))

    # leftovers a killed process could leave: a temporary file, a damaged file of right size
    stale = root / "cam1" / f".0001.jpg.x1y2{PART_SUFFIX}"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half")
    damaged = sorted(present)[0]
    (root / damaged).write_bytes(bytes(len(present[damaged])))

    resumed = CountingClient(s3_server.client())
    download_prefix(uri, cache, client=resumed, workers=1)
    fetched = {key.rsplit("/sysu/", 1)[1] for key in resumed.downloads}
    assert fetched == (set(expected) - set(present)) | {damaged}
    assert files_of(root) == expected
    assert not stale.exists()


def test_parallel_mirrors_of_one_prefix_agree(s3_server, sysu_tree, tmp_path):
    uri = upload_tree(s3_server, sysu_tree)
    cache = tmp_path / "cache"
    results: list[object] = []

    def mirror() -> None:
        try:
            results.append(download_prefix(uri, cache, client=s3_server.client()))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=mirror) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and all(isinstance(r, Path) for r in results), results
    assert files_of(results[0]) == files_of(sysu_tree)


def test_bad_credentials_are_reported_and_write_nothing(s3_server, sysu_tree, tmp_path):
    uri = upload_tree(s3_server, sysu_tree)
    cache = tmp_path / "cache"
    with pytest.raises(StorageError) as caught:
        download_prefix(uri, cache, client=s3_server.client(secret_key="not-the-secret"))
    message = str(caught.value)
    assert "denied" in message and s3_server.data_bucket in message
    assert s3_server.endpoint in message and "MINIO_SECRET_KEY" in message
    assert all_files(tmp_path / "cache") == []


def test_missing_bucket_is_reported_and_writes_nothing(s3_server, tmp_path):
    with pytest.raises(StorageError) as caught:
        download_prefix("s3://no-such-bucket-here/x", tmp_path / "cache", client=s3_server.client())
    message = str(caught.value)
    assert "'no-such-bucket-here' does not exist" in message and s3_server.endpoint in message
    assert all_files(tmp_path / "cache") == []


def test_empty_prefix_is_an_error(s3_server, tmp_path):
    with pytest.raises(StorageError, match="no objects under"):
        uri = f"s3://{s3_server.data_bucket}/{uuid.uuid4().hex}"
        download_prefix(uri, tmp_path / "c", client=s3_server.client())


def test_unreachable_endpoint_is_reported_and_writes_nothing(unused_port, monkeypatch, tmp_path):
    endpoint = f"127.0.0.1:{unused_port}"  # nothing listens there
    monkeypatch.setenv("MINIO_ENDPOINT", endpoint)
    monkeypatch.setenv("MINIO_ACCESS_KEY", "someone")
    monkeypatch.setenv("MINIO_SECRET_KEY", "something")
    client = client_from_env(retries=0)
    with pytest.raises(StorageError) as caught:
        resolve_dataset_root("s3://mmm-data/sysu", tmp_path / "cache", client=client)
    assert "cannot reach" in str(caught.value) and endpoint in str(caught.value)
    assert all_files(tmp_path / "cache") == []


def test_object_round_trip_listing_and_missing_object(s3_server, sysu_tree):
    client = s3_server.client()
    uri = upload_tree(s3_server, sysu_tree)
    listing = list_objects(uri, client=client)
    assert sorted(listing) == sorted(files_of(sysu_tree))
    # one-part uploads: the ETag is the file's MD5 (what the retraining state compares)
    name = sorted(listing)[3]
    assert listing[name] == file_md5(sysu_tree / name)

    state = f"{uri}/.mmm/state.json"
    assert read_bytes(state, client=client) is None  # absent: None, not an error
    write_bytes(state, b'{"v": 1}', content_type="application/json", client=client)
    assert read_bytes(state, client=client) == b'{"v": 1}'
    write_bytes(state, b'{"v": 2}', client=client)  # replaced in place
    assert read_bytes(state, client=client) == b'{"v": 2}'
    expected = hashlib.md5(b'{"v": 2}', usedforsecurity=False).hexdigest()
    assert list_objects(uri, client=client)[".mmm/state.json"] == expected

    with pytest.raises(ValueError, match="not an object"):
        read_bytes(f"{uri}/", client=client)
    with pytest.raises(StorageError, match="'missing-bucket' does not exist"):
        read_bytes("s3://missing-bucket/a.json", client=client)


def test_upload_to_a_missing_bucket_is_reported(s3_server, tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_text("a")
    with pytest.raises(StorageError, match="'missing-bucket' does not exist"):
        upload_directory(tmp_path / "tree", "s3://missing-bucket/p", client=s3_server.client())
    bad = make_client(s3_server.endpoint, s3_server.access_key, "wrong", retries=0)
    with pytest.raises(StorageError, match="denied"):
        write_bytes(f"s3://{s3_server.data_bucket}/x/a.txt", b"a", client=bad)
    with pytest.raises(StorageError, match="denied"):
        list_objects(f"s3://{s3_server.data_bucket}/x", client=bad)
