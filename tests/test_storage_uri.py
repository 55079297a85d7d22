"""mmm_core.storage without a server: URIs, configuration, refusing unsafe keys."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmm_core.storage import (
    StorageError,
    client_from_env,
    default_cache_dir,
    download_prefix,
    is_remote,
    parse_s3_uri,
    resolve_dataset_root,
)

MINIO_VARIABLES = ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_SECURE")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://datasets/sysu", ("datasets", "sysu")),
        ("s3://datasets/raw/sysu-mm01/", ("datasets", "raw/sysu-mm01")),
        ("s3://datasets", ("datasets", "")),
        ("s3://datasets/", ("datasets", "")),
        ("S3://my.bucket-1/a/b/c.jpg", ("my.bucket-1", "a/b/c.jpg")),
    ],
)
def test_parse_s3_uri(uri, expected):
    assert parse_s3_uri(uri) == expected
    assert is_remote(uri)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/data/sysu", "not an s3:// URI"),
        ("s3:///sysu", "no bucket name"),
        ("s3://Data/sysu", "invalid bucket name 'Data'"),
        ("s3://ab/sysu", "invalid bucket name 'ab'"),
        ("s3://bucket_x/sysu", "invalid bucket name"),
        ("s3://bucket/a//b", "empty, '.' or '..'"),
        ("s3://bucket/a/../b", "empty, '.' or '..'"),
    ],
)
def test_parse_s3_uri_rejects(uri, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_s3_uri(uri)


def test_local_paths_are_not_remote(tmp_path):
    assert not is_remote(tmp_path)
    assert not is_remote("relative/s3://x")
    assert resolve_dataset_root(tmp_path / "sysu") == tmp_path / "sysu"


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MMM_CACHE_DIR", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("MMM_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "mmm"


@pytest.mark.parametrize("missing", ["MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"])
def test_client_from_env_names_the_missing_variable(monkeypatch, missing):
    for name, value in zip(MINIO_VARIABLES, ("minio:9000", "key", "secret", "0"), strict=True):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    with pytest.raises(StorageError, match=f"{missing} is not set"):
        client_from_env()


@pytest.mark.parametrize(
    ("endpoint", "secure", "host", "https"),
    [
        ("minio.kubeflow:9000", "", "minio.kubeflow:9000", False),
        ("minio.kubeflow:9000", "1", "minio.kubeflow:9000", True),
        ("https://s3.example.org", "", "s3.example.org", True),
        ("http://minio:9000/", "", "minio:9000", False),
    ],
)
def test_client_from_env_endpoint_and_scheme(monkeypatch, endpoint, secure, host, https):
    monkeypatch.setenv("MINIO_ENDPOINT", endpoint)
    monkeypatch.setenv("MINIO_ACCESS_KEY", "key")
    monkeypatch.setenv("MINIO_SECRET_KEY", "secret")
    monkeypatch.setenv("MINIO_SECURE", secure)
    client = client_from_env()
    assert client._base_url.host == host
    assert client._base_url.is_https is https


def test_client_from_env_rejects_bad_secure_flag(monkeypatch):
    monkeypatch.setenv("MINIO_ENDPOINT", "minio:9000")
    monkeypatch.setenv("MINIO_ACCESS_KEY", "key")
    monkeypatch.setenv("MINIO_SECRET_KEY", "secret")
    monkeypatch.setenv("MINIO_SECURE", "maybe")
    with pytest.raises(StorageError, match="MINIO_SECURE must be 0 or 1"):
        client_from_env()


class ListingOnly:
    """A client whose bucket lists the given keys (never downloads)."""

    def __init__(self, keys: list[str]):
        self.keys = keys

    def list_objects(self, bucket, prefix="", recursive=False):
        for key in self.keys:
            yield SimpleNamespace(
                object_name=key,
                is_dir=key.endswith("/"),
                size=1,
                etag="0" * 32,
                last_modified=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            )

    def get_object(self, *args, **kwargs):
        raise AssertionError("nothing may be downloaded")


@pytest.mark.parametrize("bad_key", ["data/../escape.txt", "data//x.jpg", "data/a.jpg.mmm-part"])
def test_keys_that_would_escape_the_cache_are_refused(tmp_path, bad_key):
    client = ListingOnly(["data/ok.jpg", bad_key])
    with pytest.raises(StorageError, match="bucket/" + bad_key.replace(".", r"\.")):
        download_prefix("s3://bucket/data", tmp_path / "cache", client=client)
    assert not (tmp_path / "cache").exists()


def test_folder_markers_only_is_an_empty_prefix(tmp_path):
    client = ListingOnly(["data/", "data/cam1/"])
    with pytest.raises(StorageError, match="no objects under s3://bucket/data"):
        download_prefix("s3://bucket/data", tmp_path / "cache", client=client)
