import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cluster import Cluster  # noqa: E402

_failed_modules: set[str] = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        _failed_modules.add(item.module.__name__)


@pytest.fixture(scope="module", autouse=True)
def _remove_clusters_of_passed_module(request):
    """Delete the module's clusters at its end when all its tests passed.

    Autouse and module-scoped, so it is set up before the module's own
    cluster fixtures and torn down after them. A failed module keeps its
    directories (server logs, raw files) for inspection, as does
    PG_EPHCRYPT_E2E_KEEP=1.
    """
    first = len(Cluster.created)
    yield
    mine = Cluster.created[first:]
    del Cluster.created[first:]
    if request.module.__name__ in _failed_modules or os.environ.get("PG_EPHCRYPT_E2E_KEEP") == "1":
        return
    for c in mine:
        c.remove()
