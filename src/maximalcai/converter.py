"""llama.cpp's GGUF converter (``convert_hf_to_gguf.py``), which the export runs: where it comes from.

From ``export.llama_cpp`` (a llama.cpp checkout) when that is set; else from the llama.cpp sources vendored
in the ``llama-cpp-python`` sdist on PyPI, unpacked once (sha256-checked, only the converter's files kept)
into ``~/.cache/maximalcai/`` (``$XDG_CACHE_HOME``). The sdist is fetched from PyPI's file host, and when that
fails, through ``pip download``, which honours pip's own index, proxy and certificate settings (a mirror).

On a cluster whose nodes cannot reach either, fetch it ahead of time on a host that can, into the cache the
nodes share (``maximalcai converter``), or download the sdist anywhere and unpack it there:

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36
    maximalcai converter --sdist llama_cpp_python-0.3.36.tar.gz
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from maximalcai.errors import ModelSourceError
from maximalcai.reproducibility import file_sha256

logger = logging.getLogger(__name__)

PACKAGE = "llama-cpp-python==0.3.36"
SDIST = (
    "https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/"
    "llama_cpp_python-0.3.36.tar.gz",
    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
)
PARTS = ("convert_hf_to_gguf.py", "conversion", "gguf-py")
SCRIPT = "convert_hf_to_gguf.py"
AHEAD = (
    f"on a host that can reach PyPI or your index, run `pip download --no-deps --no-binary :all: {PACKAGE}`, "
    f"copy the file here and run `maximalcai converter --sdist {Path(SDIST[0]).name}`"
)


def sdist_name() -> str:
    return Path(SDIST[0]).name


def cached_folder(cache: Path | None = None) -> Path:
    """Where the converter is unpacked: ``cache`` (default ``$XDG_CACHE_HOME/maximalcai``) / the sdist's name."""
    cache = cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "maximalcai"
    return cache / sdist_name().removesuffix(".tar.gz")


def llama_cpp_converter(setting: str | None, cache: Path | None = None) -> Path:
    """The converter script: in ``setting`` (a llama.cpp checkout) when given, else unpacked in the cache,
    fetched first if it is not there yet."""
    return checkout_script(setting) if setting else fetch(cache)


def checkout_script(setting: str) -> Path:
    """The converter in ``export.llama_cpp``'s folder; ModelSourceError naming the fix when it has none (the
    workflow's start-of-run check calls this too)."""
    script = Path(setting) / SCRIPT
    if not script.is_file():
        raise ModelSourceError(
            f"export.llama_cpp: {setting} has no {SCRIPT}; point it at a llama.cpp checkout (or the folder "
            "`maximalcai converter` prints), or set it to null to fetch the converter at export"
        )
    return script


def fetch(cache: Path | None = None, sdist: Path | None = None) -> Path:
    """The cached converter; unpacked from ``sdist`` (a ``pip download`` of PACKAGE) or, without one,
    downloaded: PyPI's file host first, then ``pip download``. Returns the script's path."""
    folder = cached_folder(cache)
    if (folder / SCRIPT).is_file():
        return folder / SCRIPT
    folder.parent.mkdir(parents=True, exist_ok=True)
    if sdist is not None:
        return unpack(Path(sdist), folder)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".download-") as tmp:
        url, archive, failures = SDIST[0], Path(tmp) / sdist_name(), []
        logger.info("downloading llama.cpp's GGUF converter (the %s sdist, 77 MB) from %s", sdist_name(), url)
        try:
            download(url, archive)
        except OSError as exc:
            failures.append(f"{url}: {exc}")
            logger.warning("%s; trying pip download (pip's index settings)", failures[-1])
            try:
                archive = pip_download(Path(tmp))
            except OSError as exc:
                failures.append(str(exc))
                raise ModelSourceError(
                    "cannot fetch llama.cpp's GGUF converter:\n  - " + "\n  - ".join(failures) + f"\n{AHEAD}; "
                    "or set export.llama_cpp to a llama.cpp checkout, or export.gguf_types: [] to skip GGUF"
                ) from exc
        return unpack(archive, folder)


def download(url: str, target: Path, timeout: float = 30.0, attempts: int = 3, wait: float = 2.0) -> None:
    """``url`` to ``target``, failing instead of hanging: every read waits at most ``timeout`` seconds (a proxy
    that accepts and never answers), and a failed try is repeated ``attempts`` times in all, ``wait`` seconds
    apart, doubling. Raises the last OSError."""
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            return
        except OSError as exc:
            if attempt == attempts:
                raise OSError(f"{attempts} tries, each read waiting at most {timeout:g} s; the last: {exc}") from exc
            logger.warning("download of %s failed (%s); try %d of %d in %.0f s", url, exc, attempt + 1, attempts, wait)
            time.sleep(wait)
            wait *= 2


def pip_download(folder: Path) -> Path:
    """PACKAGE's sdist into ``folder`` through pip, with pip's index, proxy and certificate settings."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(folder)]
    command.append(PACKAGE)
    result = subprocess.run(command, capture_output=True, text=True)
    archive = folder / sdist_name()
    if result.returncode != 0 or not archive.is_file():
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise OSError(f"{' '.join(command[1:])} failed (exit {result.returncode}): {tail}")
    return archive


def unpack(archive: Path, folder: Path) -> Path:
    """The converter's files of ``archive`` (checked against SDIST's sha256) into ``folder``, whole or not at
    all (unpacked beside it, then renamed). Returns the script's path."""
    if not archive.is_file():
        raise ModelSourceError(f"--sdist {archive}: no such file; {AHEAD}")
    if file_sha256(archive) != SDIST[1]:
        raise ModelSourceError(
            f"{archive}: sha256 {file_sha256(archive)[:16]}... is not {sdist_name()}'s ({SDIST[1][:16]}...); "
            f"not using it. {AHEAD}"
        )
    prefix = f"{sdist_name().removesuffix('.tar.gz')}/vendor/llama.cpp/"
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".unpack-"))
    with tarfile.open(archive) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.name.startswith(prefix) and m.name[len(prefix) :].split("/")[0] in PARTS and (m.isfile() or m.isdir())
        ]
        for member in members:
            member.name = member.name[len(prefix) :]
        tar.extractall(staging, members=members, filter="data")
    if not (staging / SCRIPT).is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelSourceError(f"{archive}: has no {prefix}{SCRIPT}; not using it")
    try:
        staging.rename(folder)
    except OSError:  # another job unpacked it first
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / SCRIPT).is_file():
            raise
    return folder / SCRIPT
