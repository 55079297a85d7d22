"""Datasets and files in S3-compatible object storage (MinIO), through the `minio` client.

URIs read ``s3://bucket/prefix``. The client is configured by the environment:

- ``MINIO_ENDPOINT``: ``host:port`` (a leading ``http://`` or ``https://`` is accepted and
  sets the scheme),
- ``MINIO_ACCESS_KEY``, ``MINIO_SECRET_KEY``: the credentials,
- ``MINIO_SECURE``: ``1`` for HTTPS, ``0`` (default) for plain HTTP,
- ``MMM_CACHE_DIR``: where remote datasets are mirrored (default ``~/.cache/mmm``).

`download_prefix` mirrors a prefix into a local cache that survives interruption: each object
is written to a temporary file beside its final name and renamed atomically, so a file under
its final name is always complete; a manifest of what was mirrored (size, ETag, modification
time per object) is written last, also atomically. A re-run skips objects already present and
unchanged and downloads the rest.

Every failure of the object store (bad credentials, a missing bucket or object, an
unreachable endpoint) is raised as a `StorageError` naming the bucket and the endpoint.
`minio` is imported lazily, so the package imports without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from minio import Minio

__all__ = [
    "StorageError",
    "client_from_env",
    "default_cache_dir",
    "download_prefix",
    "file_md5",
    "is_remote",
    "list_objects",
    "make_client",
    "parse_s3_uri",
    "read_bytes",
    "resolve_dataset_root",
    "upload_directory",
    "write_bytes",
]

log = logging.getLogger(__name__)

SCHEME = "s3://"
PART_SUFFIX = ".mmm-part"  # temporary files; never a dataset file's extension
MANIFEST_VERSION = 1
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CHUNK = 1 << 20
_ACCESS_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
}


class StorageError(RuntimeError):
    """The object store refused or could not serve a request; the message says which and why."""


@dataclass(frozen=True)
class _RemoteObject:
    key: str  # full object key
    relative: str  # key below the prefix, POSIX separators
    size: int
    etag: str
    last_modified: str

    def record(self) -> dict[str, Any]:
        return {"size": self.size, "etag": self.etag, "last_modified": self.last_modified}


# --------------------------------------------------------------------------- URIs and client


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for an ``s3://`` URI, False for a local path."""
    return str(uri).lower().startswith(SCHEME)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")``.

    The prefix has no leading or trailing slash and may be empty (the whole bucket).
    Raises ValueError for anything that is not a well-formed ``s3://`` URI.
    """
    if not is_remote(uri):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    rest = str(uri)[len(SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"{uri!r}: no bucket name after s3://")
    if not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise ValueError(
            f"{uri!r}: invalid bucket name {bucket!r} (3-63 characters: lowercase letters, "
            "digits, dots and hyphens, starting and ending with a letter or digit)"
        )
    prefix = prefix.strip("/")
    parts = prefix.split("/") if prefix else []
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{uri!r}: the prefix has an empty, '.' or '..' path segment")
    return bucket, prefix


def client_from_env(*, timeout: float = 60.0, retries: int = 3) -> Minio:
    """A `minio.Minio` client from MINIO_ENDPOINT, MINIO_ACCESS_KEY, MINIO_SECRET_KEY, MINIO_SECURE.

    `timeout` (seconds) bounds connecting and each read; `retries` is the number of retries
    of a failed connection or a 5xx answer (short exponential back-off).
    Raises StorageError naming the first missing variable.
    """
    endpoint = os.environ.get("MINIO_ENDPOINT", "").strip()
    access_key = os.environ.get("MINIO_ACCESS_KEY", "")
    secret_key = os.environ.get("MINIO_SECRET_KEY", "")
    secure_text = os.environ.get("MINIO_SECURE", "").strip()
    for name, value in (
        ("MINIO_ENDPOINT", endpoint),
        ("MINIO_ACCESS_KEY", access_key),
        ("MINIO_SECRET_KEY", secret_key),
    ):
        if not value:
            raise StorageError(
                f"environment variable {name} is not set: it is needed to read s3:// URIs "
                "(MINIO_ENDPOINT=host:port, MINIO_ACCESS_KEY, MINIO_SECRET_KEY, MINIO_SECURE=0|1)"
            )
    secure = False
    scheme = re.match(r"^(https?)://", endpoint, flags=re.IGNORECASE)
    if scheme:
        secure = scheme.group(1).lower() == "https"
        endpoint = endpoint[scheme.end() :]
    endpoint = endpoint.rstrip("/")
    if "/" in endpoint or not endpoint:
        raise StorageError(f"MINIO_ENDPOINT must be host:port, got {endpoint!r}")
    if secure_text:
        if secure_text.lower() not in ("0", "1", "true", "false", "yes", "no"):
            raise StorageError(f"MINIO_SECURE must be 0 or 1, got {secure_text!r}")
        secure = secure_text.lower() in ("1", "true", "yes")
    return make_client(
        endpoint, access_key, secret_key, secure=secure, timeout=timeout, retries=retries
    )


def make_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    secure: bool = False,
    timeout: float = 60.0,
    retries: int = 3,
) -> Minio:
    """A `minio.Minio` client for ``host:port`` with bounded timeouts and retries."""
    import certifi
    import urllib3
    from minio import Minio

    http_client = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
        maxsize=16,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(
            total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
        ),
    )
    return Minio(
        endpoint,
        access_key=access_key,
        secret_key=secret_key,
        secure=secure,
        http_client=http_client,
    )


def default_cache_dir() -> Path:
    """$MMM_CACHE_DIR, else ~/.cache/mmm."""
    configured = os.environ.get("MMM_CACHE_DIR", "")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "mmm"


def _endpoint_of(client: Minio) -> str:
    """``http(s)://host:port`` of a client, for messages only."""
    base = getattr(client, "_base_url", None)
    host = getattr(base, "host", None)
    if not host:
        return "the S3 endpoint"
    return f"{'https' if getattr(base, 'is_https', False) else 'http'}://{host}"


@contextlib.contextmanager
def _translated(client: Minio, bucket: str, key: str | None = None) -> Iterator[None]:
    """Turn the minio client's exceptions into a StorageError that names bucket and endpoint."""
    import urllib3
    from minio.error import InvalidResponseError, S3Error, ServerError

    endpoint = _endpoint_of(client)
    where = f"s3://{bucket}/{key}" if key else f"bucket {bucket!r}"
    try:
        yield
    except S3Error as exc:
        if exc.code == "NoSuchBucket":
            message = f"bucket {bucket!r} does not exist at {endpoint}"
        elif exc.code in ("NoSuchKey", "NoSuchObject"):
            message = f"object s3://{bucket}/{key} does not exist at {endpoint}"
        elif exc.code in _ACCESS_CODES:
            message = (
                f"access to {where} at {endpoint} denied ({exc.code}): check MINIO_ACCESS_KEY "
                "and MINIO_SECRET_KEY"
            )
        else:
            message = f"request on {where} at {endpoint} failed: {exc.code}: {exc.message}"
        raise StorageError(message) from None
    except (ServerError, InvalidResponseError) as exc:
        raise StorageError(f"request on {where} at {endpoint} failed: {exc}") from None
    except (
        urllib3.exceptions.MaxRetryError,
        urllib3.exceptions.NewConnectionError,
        urllib3.exceptions.ConnectTimeoutError,
    ) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise StorageError(f"cannot reach the S3 endpoint {endpoint} ({where}): {reason}") from None
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
        raise StorageError(
            f"connection to the S3 endpoint {endpoint} failed ({where}): {exc}"
        ) from None


# --------------------------------------------------------------------------- atomic files


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PART_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _plain_md5(etag: str) -> str | None:
    """The MD5 hex digest an ETag stands for, or None (multipart or encrypted objects)."""
    etag = etag.strip('"').lower()
    return etag if re.fullmatch(r"[0-9a-f]{32}", etag) else None


def file_md5(path: str | os.PathLike[str]) -> str:
    """MD5 hex digest of a local file (an object's ETag when it was uploaded in one part)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_object(client: Minio, bucket: str, key: str, path: Path, size: int, etag: str) -> None:
    """Stream one object to a temporary file beside `path`, verify it, rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PART_SUFFIX)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        written = 0
        with os.fdopen(fd, "wb") as handle, _translated(client, bucket, key):
            response = client.get_object(bucket, key)
            try:
                for block in response.stream(_CHUNK):
                    handle.write(block)
                    digest.update(block)
                    written += len(block)
            finally:
                response.close()
                response.release_conn()
        if size >= 0 and written != size:
            raise StorageError(f"s3://{bucket}/{key}: got {written} bytes, expected {size}")
        expected = _plain_md5(etag)
        if expected is not None and digest.hexdigest() != expected:
            raise StorageError(f"s3://{bucket}/{key}: content does not match its ETag {etag}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- prefix mirror


def _safe_relative(key: str, prefix: str, bucket: str) -> str | None:
    """`key` below `prefix`, or None for folder markers; refuses keys escaping the folder."""
    relative = key[len(prefix) + 1 :] if prefix else key
    if not relative or relative.endswith("/"):
        return None
    parts = PurePosixPath(relative).parts
    if relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"object key s3://{bucket}/{key} cannot be mirrored to a local path")
    if parts[-1].endswith(PART_SUFFIX):
        raise StorageError(f"object key s3://{bucket}/{key} ends with reserved {PART_SUFFIX}")
    return relative


def _list_prefix(client: Minio, bucket: str, prefix: str) -> list[_RemoteObject]:
    listing_prefix = f"{prefix}/" if prefix else ""
    objects = []
    with _translated(client, bucket):
        for item in client.list_objects(bucket, prefix=listing_prefix, recursive=True):
            if item.is_dir:
                continue
            relative = _safe_relative(item.object_name, prefix, bucket)
            if relative is None:
                continue
            objects.append(
                _RemoteObject(
                    key=item.object_name,
                    relative=relative,
                    size=int(item.size or 0),
                    etag=str(item.etag or "").strip('"'),
                    last_modified=item.last_modified.isoformat() if item.last_modified else "",
                )
            )
    return sorted(objects, key=lambda o: o.relative)


def _cache_paths(cache_dir: Path, bucket: str, prefix: str) -> tuple[Path, Path, Path]:
    """(mirror root, manifest file, lock file) for one prefix."""
    root = cache_dir / "s3" / bucket
    if prefix:
        root = root.joinpath(*prefix.split("/"))
    digest = hashlib.sha256(f"{bucket}/{prefix}".encode()).hexdigest()[:16]
    meta = cache_dir / "manifests"
    return root, meta / f"{bucket}-{digest}.json", meta / f"{bucket}-{digest}.lock"


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock between processes mirroring the same prefix (POSIX only)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock, renames stay atomic
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_manifest(path: Path, uri: str) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("ignoring unreadable cache manifest %s", path)
        return {}
    if data.get("version") != MANIFEST_VERSION or data.get("uri") != uri:
        return {}
    objects = data.get("objects")
    return objects if isinstance(objects, dict) else {}


def _is_current(path: Path, obj: _RemoteObject, recorded: dict[str, Any] | None) -> bool:
    """Whether the local file already holds `obj` (manifest entry, else the MD5 of the file)."""
    try:
        local_size = path.stat().st_size
    except FileNotFoundError:
        return False
    if local_size != obj.size:
        return False
    if recorded is not None and recorded == obj.record():
        return True
    expected = _plain_md5(obj.etag)
    return expected is not None and file_md5(path) == expected


def _remove_stale_parts(root: Path) -> int:
    removed = 0
    if root.is_dir():
        for stale in root.rglob(f"*{PART_SUFFIX}"):
            with contextlib.suppress(OSError):
                stale.unlink()
                removed += 1
    return removed


def download_prefix(
    uri: str,
    cache_dir: str | os.PathLike[str],
    *,
    client: Minio | None = None,
    progress: bool = False,
    workers: int = 8,
) -> Path:
    """Mirror every object under ``s3://bucket/prefix`` into `cache_dir`; return the local root.

    The root is ``cache_dir/s3/<bucket>/<prefix>``; object ``prefix/a/b.jpg`` lands at
    ``root/a/b.jpg``. Objects already mirrored with the same size and ETag (and modification
    time when recorded) are skipped, files removed from the bucket since the last mirror are
    removed, leftovers of an interrupted run are cleaned. `workers` objects download at once.
    Raises StorageError (nothing is written when the listing fails).
    """
    bucket, prefix = parse_s3_uri(uri)
    canonical = f"{SCHEME}{bucket}/{prefix}"
    client = client if client is not None else client_from_env()
    objects = _list_prefix(client, bucket, prefix)
    if not objects:
        raise StorageError(f"no objects under {canonical} at {_endpoint_of(client)}")
    root, manifest_path, lock_path = _cache_paths(Path(cache_dir), bucket, prefix)
    with _locked(lock_path):
        previous = _read_manifest(manifest_path, canonical)
        stale = _remove_stale_parts(root)
        if stale:
            log.info("removed %d temporary files of an interrupted download under %s", stale, root)
        current = {o.relative for o in objects}
        for relative in set(previous) - current:  # deleted from the bucket since last time
            with contextlib.suppress(FileNotFoundError):
                (root / relative).unlink()
        missing = [
            o for o in objects if not _is_current(root / o.relative, o, previous.get(o.relative))
        ]
        log.info(
            "%s: %d objects, %d already cached, %d to download into %s",
            canonical,
            len(objects),
            len(objects) - len(missing),
            len(missing),
            root,
        )
        _download_all(client, bucket, root, missing, progress=progress, workers=workers)
        manifest = {
            "version": MANIFEST_VERSION,
            "uri": canonical,
            "endpoint": _endpoint_of(client),
            "objects": {o.relative: o.record() for o in objects},
        }
        _write_atomically(manifest_path, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return root


def _download_all(
    client: Minio,
    bucket: str,
    root: Path,
    objects: list[_RemoteObject],
    *,
    progress: bool,
    workers: int,
) -> None:
    if not objects:
        return
    from tqdm import tqdm

    bar = tqdm(total=len(objects), unit="file", desc="download", disable=not progress)
    lock = threading.Lock()

    def fetch(obj: _RemoteObject) -> None:
        _fetch_object(client, bucket, obj.key, root / obj.relative, obj.size, obj.etag)
        with lock:
            bar.update(1)

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(fetch, obj) for obj in objects]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                for future in futures:  # running downloads finish, queued ones never start
                    future.cancel()
                raise
    finally:
        bar.close()


def resolve_dataset_root(
    root: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    client: Minio | None = None,
    progress: bool = False,
) -> Path:
    """A local dataset root: local paths unchanged, ``s3://`` URIs mirrored by `download_prefix`.

    `cache_dir` defaults to `default_cache_dir()` ($MMM_CACHE_DIR or ~/.cache/mmm).
    """
    if not is_remote(root):
        return Path(root)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return download_prefix(str(root), cache, client=client, progress=progress)


# --------------------------------------------------------------------------- single objects


def _object_of(uri: str) -> tuple[str, str]:
    """(bucket, key) of an object URI ``s3://bucket/key``; ValueError for a bucket or folder."""
    bucket, key = parse_s3_uri(uri)
    if not key or str(uri).endswith("/"):
        raise ValueError(f"{uri!r} names a bucket or folder, not an object")
    return bucket, key


def list_objects(uri: str, *, client: Minio | None = None) -> dict[str, str]:
    """``{path below the prefix (POSIX): ETag}`` of every object under ``s3://bucket/prefix``.

    One listing request stream; nothing is downloaded. Folder markers are left out; a key that
    could not be a relative path (``..``, empty segments) raises StorageError, as the mirror
    would. Raises StorageError when the store refuses or cannot be reached.
    """
    bucket, prefix = parse_s3_uri(uri)
    client = client if client is not None else client_from_env()
    return {obj.relative: obj.etag for obj in _list_prefix(client, bucket, prefix)}


def read_bytes(uri: str, *, client: Minio | None = None) -> bytes | None:
    """The content of the object ``s3://bucket/key``, or None when it does not exist.

    Raises StorageError for everything else (missing bucket, access denied, unreachable).
    """
    from minio.error import S3Error

    bucket, key = _object_of(uri)
    client = client if client is not None else client_from_env()
    with _translated(client, bucket, key):
        try:
            response = client.get_object(bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                return None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()


def write_bytes(
    uri: str,
    data: bytes,
    *,
    content_type: str = "application/octet-stream",
    client: Minio | None = None,
) -> None:
    """Store `data` as the object ``s3://bucket/key`` in one PUT (readers see the old or the
    new content, never a part). The bucket must exist. Raises StorageError."""
    bucket, key = _object_of(uri)
    client = client if client is not None else client_from_env()
    with _translated(client, bucket, key):
        client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)


# --------------------------------------------------------------------------- folders


def upload_directory(
    folder: str | os.PathLike[str],
    uri: str,
    *,
    client: Minio | None = None,
    workers: int = 8,
) -> int:
    """Upload every file under `folder` to ``s3://bucket/prefix/<relative path>``.

    Returns the number of files uploaded. The bucket must exist. Raises StorageError.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"no folder to upload at {folder}")
    bucket, prefix = parse_s3_uri(uri)
    client = client if client is not None else client_from_env()
    files = sorted(p for p in folder.rglob("*") if p.is_file())

    def put(path: Path) -> None:
        relative = path.relative_to(folder).as_posix()
        key = f"{prefix}/{relative}" if prefix else relative
        with _translated(client, bucket, key):
            client.fput_object(bucket, key, str(path))

    with _translated(client, bucket):  # the bucket must exist before a pool starts
        if not client.bucket_exists(bucket):
            raise StorageError(f"bucket {bucket!r} does not exist at {_endpoint_of(client)}")
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for future in [pool.submit(put, p) for p in files]:
            future.result()
    return len(files)
