"""Shared test settings: small thread counts so two pytest workers share two cores."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
