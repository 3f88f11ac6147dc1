"""The d2l §7.6 exercises (SPEC §3): what the `d2l-*` suites need beyond training.

- ex3's rule, which picks ex2's best configuration from ex2's records, so the "improved
  network" tried on MNIST is chosen by a written rule and never by hand;
- reuse of a run that another suite already trained with the identical config (ex5 analyses
  the same two trained networks as ex4; training is deterministic, so retraining them would
  only cost time and give the same numbers);
- the analyses that turn records and saved weights into `analysis/summary.json` and figures:
  ablation tables (ex1–ex3), the epochs curve (ex2), conv activations of pullovers vs coats
  (ex4) and activations/predictions on out-of-distribution images (ex5).

Every analysis is a pure function of the records, the weights and the datasets: images are
chosen by fixed rules, noise is seeded, the probe's folds are seeded, and floats are rounded,
so the same inputs give the same JSON.

Where things live:

- `common`: rounding and stats for the JSON, level/override labels, the paired seed-by-seed
  comparison;
- `extension`: the suite extension (group keys `best_of`, `analysis`, `reuse` and hooks)
  registered with bench.suites on import;
- `rules`: ex3's rule (`RULES`, `apply_rule`, `best_of_choices`) and `reuse_finished`;
- `analyses`: `run_analyses`, the entry point (digest, up-to-date check, summary.json);
- `ablation`: ex1–ex3 ablation tables and ex2's epochs curve;
- `activations`: trained runs rebuilt, layer activations, the linear probe; ex4's summary;
- `ood`: ex5's far-from-training inputs (noise, the other dataset, photos) and summary.

The tunable image counts (`PROBE_IMAGES`, `FIGURE_IMAGES`, `OOD_*`) are deliberately not
re-exported: each is read by its own module, so patch it there (`bench.d2l.ood.OOD_NOISE`).
"""

from bench.d2l.activations import forward_with_activations, layer_modules
from bench.d2l.analyses import ANALYSES, run_analyses
from bench.d2l.extension import EXTENSION
from bench.d2l.ood import PHOTOS, load_photo, ood_inputs
from bench.d2l.rules import RULES, apply_rule, best_of_choices, reuse_finished
from bench.suites import register_extension

register_extension(EXTENSION)

__all__ = [
    "ANALYSES",
    "PHOTOS",
    "RULES",
    "EXTENSION",
    "apply_rule",
    "best_of_choices",
    "forward_with_activations",
    "layer_modules",
    "load_photo",
    "ood_inputs",
    "reuse_finished",
    "run_analyses",
]
