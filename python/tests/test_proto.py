"""The committed message classes are exactly what grpcio-tools (pinned in the test extra)
makes from ../proto today: regenerate into a temporary folder and compare byte for byte."""
import sys
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PYTHON_DIR / "scripts"))
import generate_proto  # noqa: E402


def test_generated_classes_match_the_proto(tmp_path):
    fresh = {p.name: p.read_bytes() for p in generate_proto.generate(tmp_path)}
    committed_dir = generate_proto.PACKAGE_DIR
    committed = {p.name: p.read_bytes() for p in committed_dir.glob("*.py")}
    assert sorted(committed) == sorted(fresh), "files in src/ebm_client/_proto"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, (
        f"{stale} differ from proto/: run `python python/scripts/generate_proto.py` and commit"
    )
