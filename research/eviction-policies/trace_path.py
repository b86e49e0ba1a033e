"""The Mooncake trace: $TRACE, else the copy bundled in the repository (zstd-compressed)."""
import json, os, subprocess

TRACE = os.environ.get("TRACE") or os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "../../data/traces/mooncake_synthetic_trace.jsonl.zst"))


def _text(path):
    if not path.endswith(".zst"):
        with open(path, "rb") as f:
            return f.read().decode()
    try:
        import zstandard
    except ImportError:  # keep the study dependency-free: the zstd CLI does the same job
        return subprocess.run(["zstd", "-dc", path], check=True, stdout=subprocess.PIPE).stdout.decode()
    with open(path, "rb") as f:
        # stream_reader, not decompress(): it also reads frames whose header omits the size (`zstd` from a pipe)
        return zstandard.ZstdDecompressor().stream_reader(f).read().decode()


# One dict per request, parsed once and shared by every module that imports this one.
ROWS = [json.loads(l) for l in _text(TRACE).splitlines() if l.strip()]
