"""Loaded by the production smoke test's dashboard processes (web, worker, beat) through PYTHONPATH.

The dashboard image does not install the embedded engine's scientific stack. This makes those packages behave
as if absent, and writes each attempt to import one, with the importing module, to the file named by
OMLPY_BLOCKED_IMPORTS_LOG, so that the test can show the processes never needed them.
"""

import os
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {"pandas", "numpy", "matplotlib"}
LOG = os.environ.get("OMLPY_BLOCKED_IMPORTS_LOG", "")


class _Absent(MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top not in BLOCKED:
            return
        if LOG:
            frame = sys._getframe(1)
            importer = "?"
            while frame is not None:
                name = frame.f_globals.get("__name__", "")
                if not name.startswith(("importlib", "_frozen_importlib")) and name != __name__:
                    importer = name
                    break
                frame = frame.f_back
            with open(LOG, "a") as log:
                log.write(f"{os.getpid()} {fullname} {importer}\n")
        raise ModuleNotFoundError(f"No module named {fullname!r} (not installed in the dashboard image)")


sys.meta_path.insert(0, _Absent())
