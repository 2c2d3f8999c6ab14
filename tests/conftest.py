"""Puts tests/ on sys.path, so every test file, at any depth, imports the helper modules here
(oracles, hostile, import_graph, fine_fixtures, train_fixtures) by their bare names, and a test file
imports another's helpers by its path below tests/ (``from projections.test_phantoms import ...``).

Test files mirror the package (tests/<package>/test_<module>.py) and are imported with
``--import-mode=importlib`` (pyproject.toml), so equal basenames in two folders do not collide and
no __init__.py is needed.
"""

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
