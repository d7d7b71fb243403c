"""The privacy budget of a family fitted from noisy counts (``fits_once`` families: privbayes).

Such a family makes three kinds of release, each a Gaussian mechanism or an exponential mechanism,
all counted in the same RDP accountant as DP-SGD (``genzoo.train.dp``), after the table's private
encoding (``genzoo.train.dp_table_encoding``) that every DP table run publishes first:

1. the 1-way counts of the d columns: one row adds 1 to one cell per column, L2 sensitivity sqrt(d);
2. d - 1 choices of a column's parents by the exponential mechanism, each with a score of sensitivity 1
   (epsilon0-DP is epsilon0^2 / 8-zCDP, Cesar & Rogers 2021, and rho-zCDP has the RDP alpha rho of a
   Gaussian mechanism with noise multiplier 1 / sqrt(2 rho): so each is an accountant entry);
3. the d - 1 tables of a column with its parents: one row adds 1 to one cell per table, sensitivity sqrt(d - 1).

They get ``SHARES`` of one zCDP budget R = 1 / (2 t^2), and t is the smallest for which the accountant,
the encoding included, spends at most --dp-epsilon at --dp-delta (less the encoding's threshold share).
The noise comes from os.urandom, or from a seeded generator with GENZOO_DP_SEEDED_NOISE=1 (tests).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from genzoo.core.atomic import write_atomic_file
from genzoo.core.errors import GenzooError
from genzoo.train.dp_table_encoding import Noise

SHARES = {"one_way": 0.1, "selection": 0.3, "tables": 0.6}  # PrivBayes spends most on the tables it keeps
SALT = 0x9B0E5  # the seeded noise differs from the encoding's and DP-SGD's of the same seed


class MarginalPrivacy:
    """The private side of a Trainer for a ``fits_once`` family: noise scales, the exponential
    mechanism's epsilon0 and the accountant (the Trainer's ``privacy`` for it)."""

    def __init__(self, model, config, num_examples: int):
        from genzoo.train.dp import calibrate, default_delta

        table = (getattr(model, "data_spec", None) or {}).get("table") or {}
        self.schema = table.get("privacy")
        if not self.schema:
            raise GenzooError(f"{model.family}: its table encoding was fitted without noise; train it through "
                              "`genzoo train` / api.train, which fit the encoding privately under --dp-epsilon")
        self.n = int(num_examples)
        self.d = len(table["columns"])
        if self.d < 2:
            raise GenzooError(f"{model.family} needs a table of 2 columns or more, got {self.d}")
        self.epsilon_target = float(config.dp_epsilon)
        self.delta = float(config.dp_delta) if config.dp_delta is not None else default_delta(self.n)
        if not math.isclose(self.schema["delta"], self.delta):
            raise GenzooError(f"the table's private encoding was fitted for delta {self.schema['delta']:g}, this run asks for "
                              f"{self.delta:g}; train with the same --dp-delta")
        self.delta_rdp = self.delta - self.schema["delta_threshold"]
        self.prior = [(self.schema["noise_multiplier"], 1.0, self.schema["releases"])]
        try:
            self.t = calibrate(lambda t: self._spent(t), self.epsilon_target, lo=1e-4, hi=1e6, tolerance=0.01)
        except ValueError:
            raise GenzooError(f"--dp-epsilon {self.epsilon_target:g} is too small for {model.family} on this table; raise it") from None
        sigma = self._multipliers(self.t)
        self.one_way_sd = sigma["one_way"] * math.sqrt(self.d)
        self.table_sd = sigma["tables"] * math.sqrt(self.d - 1)
        self.selection_epsilon = 2.0 / sigma["selection"]  # epsilon0 = sqrt(8 rho0), rho0 = 1 / (2 sigma^2)
        self.noise = Noise(config.seed, SALT)
        self.seed = config.seed
        self.fitted = False
        print(f"differential privacy: noisy counts ({self.one_way_sd:.1f} rows sd per 1-way cell, {self.table_sd:.1f} per "
              f"table cell) and {self.d - 1} exponential-mechanism choices (epsilon0 {self.selection_epsilon:.3f}), noise from "
              f"{self.noise.description}", file=sys.stderr)

    def _multipliers(self, t: float) -> dict:
        """Noise multipliers (per unit of sensitivity) of each release at budget R = 1 / (2 t^2)."""
        return {"one_way": t / math.sqrt(SHARES["one_way"]), "tables": t / math.sqrt(SHARES["tables"]),
                "selection": t * math.sqrt((self.d - 1) / SHARES["selection"])}

    def _history(self, t: float) -> list:
        s = self._multipliers(t)
        return [(s["one_way"], 1.0, 1), (s["selection"], 1.0, self.d - 1), (s["tables"], 1.0, 1)]

    def _spent(self, t: float | None) -> float:
        from genzoo.train.dp import spent_epsilon

        return spent_epsilon([*self.prior, *(self._history(t) if t is not None else [])], self.delta_rdp)

    # ---- the Trainer's interface (as genzoo.train.dp.PrivateTraining's) ----------------------------
    def epsilon(self) -> float:
        """Spent so far: the encoding's releases, and the fit's once it ran."""
        return self._spent(self.t if self.fitted else None)

    def log_fields(self) -> dict:
        return {"dp_epsilon_spent": round(self.epsilon(), 4), "dp_delta": self.delta}

    def summary(self) -> dict:
        return {"epsilon": self.epsilon(), "epsilon_target": self.epsilon_target, "delta": self.delta,
                "mechanism": "noisy marginals (genzoo.train.dp_marginals): 1-way counts, exponential-mechanism network, "
                             "noisy conditional tables", "accountant": "rdp", "budget_shares": SHARES,
                "one_way_cell_sd": self.one_way_sd, "table_cell_sd": self.table_sd,
                "selection_epsilon0": self.selection_epsilon, "choices": self.d - 1, "randomness": self.noise.description,
                "training_examples": self.n, "table_encoding": self.schema, "frozen_parameters": []}

    def write(self, out_dir: Path) -> None:
        write_atomic_file(Path(out_dir) / "privacy.json", json.dumps(self.summary(), indent=2))

    def state_dict(self) -> dict:
        return {"t": self.t, "delta": self.delta, "fitted": self.fitted}

    def load_state_dict(self, state: dict | None, total_steps: int | None) -> None:
        if not state:
            raise GenzooError("this checkpoint was fitted without --dp-epsilon; sample from it, or start a new run")
        if not math.isclose(state["delta"], self.delta):
            raise GenzooError("resume a DP run with the --dp-delta it started with")
        self.t, self.fitted = state["t"], state["fitted"]

    def detach(self) -> None:
        pass  # no hooks to remove
