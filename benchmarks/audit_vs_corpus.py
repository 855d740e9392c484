"""The installed verl on the settings of corpus entries that the audit's factored space leaves out.

``ida-verify audit verl`` varies one axis at a time from a base (``properties/audit/verl.py``),
so some corpus entries (``tests/corpus/``, older verl commits) have no audit row with their
settings: GRPO without the std normalisation (``AlgoConfig.norm_adv_by_std_in_grpo = False``,
Dr. GRPO), GRPO with ``seq-mean-token-mean``, GSPO with ``seq-mean-token-mean``.  This runs
those settings through the same glue (``properties.audit.verl.build``, verl's own functions)
and prints one JSON line per row with the verdict and every measured constant, for the
comparison in ``tests/corpus/README.md`` ("The installed verl").  Needs verl (the test extra):

    python benchmarks/audit_vs_corpus.py [NAME ...]
"""

from __future__ import annotations

import json
import sys
from typing import Any

ROWS: dict[str, tuple[str, str, str, bool, str]] = {
    "grpo seq-mean-token-mean": (
        "grpo", "vanilla", "seq-mean-token-mean", True, "verl_grpo_seq_mean_token_mean"),
    "grpo-nostd seq-mean-token-sum": (
        "grpo", "vanilla", "seq-mean-token-sum", False, "verl_grpo_nostd_seq_mean_token_sum"),
    "grpo-nostd seq-mean-token-sum-norm": (
        "grpo", "vanilla", "seq-mean-token-sum-norm", False, "verl_drgrpo_seq_mean_token_sum_norm"),
    "gspo seq-mean-token-mean": ("rloo", "gspo", "seq-mean-token-mean", True, "verl_gspo"),
}
"""Row -> (estimator, policy loss, aggregation, norm_adv_by_std_in_grpo, corpus entry)."""


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        print(f"audit_vs_corpus: unknown row {unknown[0]!r} (one of {sorted(ROWS)})", file=sys.stderr)
        return 2
    import verl.trainer.config as verl_config

    from properties.audit import verl as audit_verl
    from properties.audit.core import Configuration, run_configuration

    algo_config = verl_config.AlgoConfig
    version = audit_verl.version()
    try:
        for name in names or list(ROWS):
            estimator, loss, agg, std, entry = ROWS[name]

            def no_std() -> Any:
                return algo_config(norm_adv_by_std_in_grpo=False)

            # properties.audit.verl imports AlgoConfig when it builds the advantages
            verl_config.AlgoConfig = algo_config if std else no_std
            axes = (("estimator", estimator), ("policy_loss", loss), ("loss_agg_mode", agg),
                    ("off_policy", "no"))
            row = run_configuration(Configuration("verl", name, axes), version)
            print(json.dumps({
                "name": name, "corpus": entry, "version": version, "verdict": row.verdict,
                "scale": (row.report or {}).get("scale") if row.verdict == "scaled" else None,
                "cause": row.cause, "seconds": round(row.seconds, 1),
            }), flush=True)
    finally:
        verl_config.AlgoConfig = algo_config
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
