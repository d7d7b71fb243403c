import os
import tempfile

import torch

# Tests use tiny models, for which one thread is as fast as two and immune to
# OpenMP spin-wait slowdowns when other processes share the cores.
torch.set_num_threads(int(os.environ.get("GENZOO_TEST_THREADS", "1")))
os.environ.setdefault("GENZOO_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache", "genzoo"))
# `genzoo sample` / `generate` record into a store by default: never into the user's own one from tests
os.environ.setdefault("GENZOO_STORE", os.path.join(tempfile.mkdtemp(prefix="genzoo-test-store-"), "store.db"))

# Property tests: the suite runs a fixed set of examples (derandomized: CI passes or fails on the
# code, never on the draw); HYPOTHESIS_PROFILE=explore draws fresh examples
# (the fuzz and visibility tests then run 25x as many) to hunt for new failures.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

from pg_server import pg_cluster, pg_empty_url, pg_url  # noqa: E402,F401  (PostgreSQL fixtures for the store tests)
