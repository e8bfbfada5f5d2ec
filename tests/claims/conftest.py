"""Shared helpers of the claims tests: synthetic run directories come from tests/compare/compare_rundirs.py."""
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS.parent / "compare"))
TINY_CARD = TESTS / "cards" / "tiny.yaml"
# Apart from the classic cards: the `--all` test lists every card in TINY_CARD's folder.
TINY_PROCEDURE_CARD = TESTS / "procedure_cards" / "tiny_procedure.yaml"
